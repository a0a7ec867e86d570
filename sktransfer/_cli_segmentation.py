"""The segmentation task: ``fit --task segmentation`` and ``predict``'s PNG masks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from . import _cli_common as common


def is_segmenter(model) -> bool:
    """Whether ``predict`` writes masks for ``model`` rather than a CSV."""
    if getattr(model, "task_", None) == "segmenter":  # an exported ONNX graph
        return True
    return hasattr(model, "n_classes_") and hasattr(model, "ignore_index")


def build_segmenter(args, frozen: bool):
    """The FineTuneSegmenter the options describe; ``frozen``: no backbone layer trained."""
    from ._segmenter import FineTuneSegmenter

    training = common.training_params(args, common.FINETUNE_DEFAULTS)
    if frozen:
        training["unfreeze"] = 0
    if args.validation_fraction is not None:
        training["validation_fraction"] = args.validation_fraction
    return FineTuneSegmenter(**common.backbone_params(args), **training,
                             verbose=not args.quiet, ignore_index=args.ignore_index)


def fit(args) -> int:
    """Fit a segmenter on FOLDER's images and --masks' label images, and save it."""
    from sklearn.model_selection import GridSearchCV

    from .folders import load_mask_folder

    if not args.masks:
        raise common.CliError("--task segmentation needs --masks DIR: one label image (PNG, "
                              "one class index per pixel) per image, matched by file name")
    if args.unlabelled or args.targets:
        raise common.CliError("--unlabelled and --targets do not apply to --task segmentation")
    if args.reject_label is not None:
        raise common.CliError("--reject-label is for classifiers, not --task segmentation")
    images, masks, unused = load_mask_folder(args.folder, args.masks)
    if unused:
        print(f"note: {len(unused)} mask file(s) match no image, e.g. {unused[0]}",
              file=sys.stderr)
    X, y = [str(p) for p in images], [str(p) for p in masks]
    print(f"{len(X)} images with masks")
    splitter = common.kfold(args, len(X))
    start = time.perf_counter()
    if args.strategy == "auto":
        search = GridSearchCV(build_segmenter(args, frozen=True), {"unfreeze": [0, 1, 2]},
                              cv=splitter, error_score="raise").fit(X, y)
        estimator, cv_score = search.best_estimator_, search.best_score_
        for params, score, seconds in zip(search.cv_results_["params"],
                                          search.cv_results_["mean_test_score"],
                                          search.cv_results_["mean_fit_time"], strict=True):
            print(f"  finetune unfreeze={params['unfreeze']:<8} cv mean IoU {score:.3f}  "
                  f"fit {seconds:.3g} s (per cross-validation fit)")
        chosen = f"finetune (unfreeze={estimator.unfreeze})"
    else:
        estimator = build_segmenter(args, frozen=args.strategy == "frozen")
        chosen = "frozen backbone, FCN head" if estimator.unfreeze == 0 else \
            f"finetune (unfreeze={estimator.unfreeze})"
        cv_score = common.fit_scored(estimator, X, y, splitter)
    common.save_and_report(estimator, args, chosen, start, cv_score, common.cv_folds(args),
                           "mean IoU")
    return common.EXIT_OK


def write_masks(model, paths: list[Path], out: str | None) -> int:
    """Predict a mask per image and write it as ``OUT/<image stem>.png``: a palette PNG
    whose pixel values are the class indices (PASCAL VOC's format)."""
    from PIL import Image

    if not out:
        raise common.CliError("a segmentation model writes one PNG mask per image: pass -o "
                              "FOLDER")
    if getattr(model, "resizes_", True) is False:  # an ONNX graph of fixed input size
        raise common.CliError(
            f"{model.path} takes {model.preprocessing_.crop_size}-pixel squares and returns "
            "masks of that size; export it with 'sktransfer export --resize' to write masks "
            "at each image's own size")
    folder = Path(out)
    if folder.suffix.lower() == ".csv":
        raise common.CliError(f"-o {out}: a segmentation model writes PNG masks into a folder")
    names: dict[str, Path] = {}
    for path in paths:
        if path.stem in names:
            raise common.CliError(f"{names[path.stem]} and {path} would both be written as "
                                  f"{path.stem}.png; segment them in separate runs")
        names[path.stem] = path
    if model.n_classes_ > 256:
        raise common.CliError(f"the model has {model.n_classes_} classes; PNG masks hold 256")
    folder.mkdir(parents=True, exist_ok=True)
    palette = _palette()
    step = max(int(model.batch_size), 1)
    for start in range(0, len(paths), step):  # written as they come, a batch at a time
        chunk = paths[start:start + step]
        for path, mask in zip(chunk, model.predict([str(p) for p in chunk]), strict=True):
            img = Image.fromarray(mask.astype(np.uint8), "P")
            img.putpalette(palette)
            img.save(folder / f"{path.stem}.png")
    print(f"wrote {len(paths)} masks to {folder}", file=sys.stderr)
    return common.EXIT_OK


def _palette() -> list[int]:
    """PASCAL VOC's colour map: class k gets the colour built from k's bits."""
    colours = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours
