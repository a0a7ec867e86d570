"""The ``export`` command: a saved model as one ONNX graph, pixels to predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import _cli_common as common


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``export`` command's options."""
    p.add_argument("model_file", help="a model written by 'sktransfer fit' or saved with "
                                      "joblib (an estimator, a Pipeline or a fitted search), "
                                      "or a .safetensors export")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="quantise the network to int8 (static with --calibration images)")
    p.add_argument("--calibration", nargs="+", default=None, metavar="IMAGES",
                   help="image files or folders whose activations calibrate int8 "
                        "quantisation (a few hundred training images)")
    p.add_argument("--resize", action="store_true",
                   help="resize and centre crop inside the graph, so that it takes images "
                        "of any size (default: the app passes images at the model's input "
                        "size)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="for a .safetensors model fine-tuned from a custom network: the "
                        "factory building that architecture")


def export(args) -> int:
    """Write ``model_file`` as an ONNX graph to ``--out`` and say what it takes and gives."""
    from .deploy import export_onnx, read_onnx_metadata
    from .folders import list_images

    if Path(args.out).suffix.lower() != ".onnx":
        raise common.CliError(f"-o {args.out}: the graph is written to a .onnx file")
    model = common.read_model_file(args.model_file, args.model)
    calibration = None
    if args.calibration:
        paths, skipped = list_images(args.calibration)
        common.warn_skipped(skipped)
        calibration = [str(p) for p in paths]
    try:
        path = export_onnx(model, args.out, opset=args.opset, quantize=args.quantize,
                           calibration=calibration, resize=args.resize)
    except (TypeError, RuntimeError) as exc:  # not exportable: the model's doing
        raise common.CliError(f"{args.model_file}: {exc}", common.EXIT_MODEL) from None
    except ImportError as exc:  # the onnx extra is missing
        raise common.CliError(str(exc), common.EXIT_INPUT) from None
    meta = read_onnx_metadata(path)
    size = meta["input"]["size"]
    takes = "any size" if size is None else f"{size[0]}x{size[1]}"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {meta['estimator']}, uint8 RGB "
          f"images (N, H, W, 3) of {takes} -> {', '.join(meta['outputs'])}"
          + (f"; {meta['quantization']}" if meta["quantization"] else ""), file=sys.stderr)
    return common.EXIT_OK
