"""The command line's segmentation task: ``fit --task segmentation --masks DIR`` and
``predict`` writing one PNG mask per image."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .cli import (
    EXIT_OK,
    CliError,
    _device_params,
    backbone_params,
    finetune_training,
    report_fit,
)


def build_segmenter(args, unfreeze):
    """The FineTuneSegmenter the options describe, training ``unfreeze`` groups."""
    from ._segmenter import FineTuneSegmenter

    lr = args.lr if args.lr == "auto" else float(args.lr)
    training = {**finetune_training(args), "unfreeze": unfreeze}
    return FineTuneSegmenter(
        **backbone_params(args), **_device_params(args), **training, lr=lr,
        augment=args.augment, random_state=args.seed, verbose=not args.quiet,
        checkpoint=args.checkpoint, ignore_index=args.ignore_index)


def cmd_fit_segmentation(args, save) -> int:
    """Fit a segmenter on FOLDER's images and --masks' label images; ``save`` writes it."""
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

    from .folders import load_mask_folder

    if not args.masks:
        raise CliError("--task segmentation needs --masks DIR: one label image (PNG, one "
                       "class index per pixel) per image, matched by file name")
    if args.unlabelled or args.targets:
        raise CliError("--unlabelled and --targets do not apply to --task segmentation")
    images, masks, unused = load_mask_folder(args.folder, args.masks)
    if unused:
        print(f"note: {len(unused)} mask file(s) match no image, e.g. {unused[0]}",
              file=sys.stderr)
    X, y = [str(p) for p in images], [str(p) for p in masks]
    print(f"{len(X)} images with masks")
    cv_folds = args.cv if args.cv is not None else (3 if args.strategy == "auto" else 0)
    if cv_folds and len(X) < cv_folds:
        raise CliError(f"--cv {cv_folds} needs at least {cv_folds} images")
    splitter = KFold(cv_folds, shuffle=True, random_state=args.seed) if cv_folds else None
    start = time.perf_counter()
    cv_score = None
    if args.strategy == "auto":
        search = GridSearchCV(build_segmenter(args, 0), {"unfreeze": [0, 1, 2]},
                              cv=splitter, error_score="raise").fit(X, y)
        estimator, cv_score = search.best_estimator_, search.best_score_
        for params, score, seconds in zip(search.cv_results_["params"],
                                          search.cv_results_["mean_test_score"],
                                          search.cv_results_["mean_fit_time"], strict=True):
            print(f"  finetune unfreeze={params['unfreeze']:<8} cv mean IoU {score:.3f}  "
                  f"fit {seconds:.3g} s (per cross-validation fit)")
        chosen = f"finetune (unfreeze={estimator.unfreeze})"
    else:
        unfreeze = 0 if args.strategy == "frozen" else finetune_training(args)["unfreeze"]
        estimator = build_segmenter(args, unfreeze)
        chosen = "frozen backbone, FCN head" if unfreeze == 0 else \
            f"finetune (unfreeze={unfreeze})"
        if splitter is not None:
            cv_score = cross_val_score(estimator, X, y, cv=splitter).mean()
        estimator.fit(X, y)
    seconds = time.perf_counter() - start
    save(estimator)
    report_fit(estimator, chosen, seconds, cv_score, cv_folds, "mean IoU", args.out)
    return EXIT_OK


def write_masks(model, paths: list[Path], out: str | None) -> int:
    """Predict a mask per image and write it as ``OUT/<image stem>.png``: a palette PNG
    whose pixel values are the class indices (PASCAL VOC's format)."""
    from PIL import Image

    if not out:
        raise CliError("a segmentation model writes one PNG mask per image: pass -o FOLDER")
    folder = Path(out)
    if folder.suffix.lower() == ".csv":
        raise CliError(f"-o {out}: a segmentation model writes PNG masks into a folder")
    names: dict[str, Path] = {}
    for path in paths:
        if path.stem in names:
            raise CliError(f"{names[path.stem]} and {path} would both be written as "
                           f"{path.stem}.png; segment them in separate runs")
        names[path.stem] = path
    if model.n_classes_ > 256:
        raise CliError(f"the model has {model.n_classes_} classes; PNG masks hold 256")
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
    return EXIT_OK


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
