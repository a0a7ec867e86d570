"""The ``predict`` command: its options, the model file, and a classifier's or regressor's CSV."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from . import _cli_common as common


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` command's options."""
    p.add_argument("model_file", help="a model written by 'sktransfer fit' (.joblib, or "
                                      ".safetensors read without unpickling)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="for a .safetensors model fine-tuned from a custom network: the "
                        "factory building that architecture")
    p.add_argument("-o", "--out", default=None,
                   help="CSV file (default: standard output); for a segmentation model, the "
                        "folder that receives one PNG mask per image")


def load_inputs(args) -> tuple[object, list[Path]]:
    """The model in ``model_file`` and the images ``inputs`` name."""
    from .folders import list_images

    model = load_model(args.model_file, args.model)
    paths, skipped = list_images(args.inputs)
    common.warn_skipped(skipped)
    return model, paths


def load_model(path: str, architecture: str | None = None):
    """A fitted classifier or regressor from a .joblib or .safetensors file (else the
    error exits with ``EXIT_MODEL``)."""
    import joblib

    try:
        if Path(path).suffix == ".safetensors":
            from .exchange import import_model

            module = common.resolve_model(architecture) if architecture else None
            model = import_model(path, model=module)  # pickle-free: no code from the file
        else:
            model = joblib.load(path)
    except FileNotFoundError:
        raise common.CliError(f"model file not found: {path}", common.EXIT_MODEL) from None
    except Exception as exc:
        raise common.CliError(f"cannot read model file {path}: {type(exc).__name__}: "
                              f"{exc}", common.EXIT_MODEL) from None
    from sklearn.base import is_regressor

    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    if not classifier and not (is_regressor(model) and hasattr(model, "predict")):
        raise common.CliError(f"{path} does not hold a fitted classifier or regressor "
                              f"({type(model).__name__})", common.EXIT_MODEL)
    return model


def _regression_rows(model, paths: list) -> tuple[list[str], list]:
    pred = np.asarray(model.predict([str(p) for p in paths]), dtype=float)
    pred = pred.reshape(len(paths), -1)
    names = getattr(model, "target_names_", None)
    if names is None or len(names) != pred.shape[1]:
        names = ["prediction"] if pred.shape[1] == 1 else [f"prediction_{i}" for i in
                                                            range(pred.shape[1])]
    header = ["path", *map(str, names)]
    return header, ([str(p), *(f"{v:.6g}" for v in row)]
                    for p, row in zip(paths, pred, strict=True))


def write_predictions(model, paths: list[Path], out: str | None) -> int:
    """A CSV row per image (label and probabilities, or estimates) to ``out`` or stdout."""
    if not hasattr(model, "predict_proba"):
        header, rows = _regression_rows(model, paths)
    else:
        proba = model.predict_proba([str(p) for p in paths])
        if getattr(model, "multilabel_", False):
            labels = [";".join(str(c) for c, v in zip(model.classes_, row, strict=True)
                               if v >= 0.5) for row in proba]
        else:
            labels = model.classes_[proba.argmax(axis=1)]
        header = ["path", "label", *[f"proba_{c}" for c in model.classes_]]
        rows = ([str(p), str(lab), *(f"{v:.6f}" for v in row)]
                for p, lab, row in zip(paths, labels, proba, strict=True))
    if out:
        common.write_csv(Path(out), header, rows)
        print(f"wrote {len(paths)} predictions to {out}", file=sys.stderr)
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    return common.EXIT_OK
