"""The ``predict`` command: its options, the model file, and a classifier's or regressor's CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _cli_common as common


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` command's options."""
    p.add_argument("model_file", help="a model written by 'sktransfer fit' (.joblib, or "
                                      ".safetensors read without unpickling), or an ONNX "
                                      "graph written by 'sktransfer export' (.onnx, run "
                                      "with onnxruntime)")
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
    """A fitted classifier, regressor or segmenter from a .joblib, .safetensors or .onnx
    file (else the error exits with ``EXIT_MODEL``)."""
    model = common.read_model_file(path, architecture)
    from sklearn.base import is_regressor

    if Path(path).suffix.lower() == ".onnx":
        if model.task_ == "transform":
            raise common.CliError(f"{path} holds a feature extractor's graph (embeddings); "
                                  "predict needs a classifier, regressor or segmenter",
                                  common.EXIT_MODEL)
        return model
    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    if not classifier and not (is_regressor(model) and hasattr(model, "predict")):
        raise common.CliError(f"{path} does not hold a fitted classifier or regressor "
                              f"({type(model).__name__})", common.EXIT_MODEL)
    return model
