"""The ``sktransfer`` command line's entry point: the commands, their dispatch, ``main``."""

from __future__ import annotations

import argparse
import sys

from . import _cli_common as common
from . import (
    _cli_export,
    _cli_extract,
    _cli_fit,
    _cli_inspect,
    _cli_predict,
    _cli_segmentation,
    _cli_zero_shot,
)

__all__ = ["main"]


def _fit(args) -> int:
    """``fit``: the segmentation module for ``--task segmentation``, else the fit module."""
    command = _cli_segmentation if args.task == "segmentation" else _cli_fit
    return command.fit(args)


def _predict(args) -> int:
    """``predict``: PNG masks for a segmenter, else a CSV of predictions."""
    model, paths = _cli_predict.load_inputs(args)
    write = _cli_segmentation.write_masks if _cli_segmentation.is_segmenter(model) \
        else common.write_predictions
    return write(model, paths, args.out)


#: Each command: its name, its line in ``sktransfer --help``, its options, what runs it.
_COMMANDS = [
    ("extract", "embed images with a frozen pretrained network",
     _cli_extract.add_arguments, _cli_extract.extract),
    ("fit", "train a classifier, regressor or segmenter and save it",
     _cli_fit.add_arguments, _fit),
    ("predict", "predict with a saved model; writes CSV (PNG masks for a segmentation model)",
     _cli_predict.add_arguments, _predict),
    ("export", "write a saved model as one ONNX graph (pixels to predictions) for any app",
     _cli_export.add_arguments, _cli_export.export),
    ("zero-shot", "label images with classes named in text (few-shot with --shots)",
     _cli_zero_shot.add_arguments, _cli_zero_shot.zero_shot),
    ("inspect", "report where a saved classifier fails on a labelled folder (top losses "
     "with heat maps, confusions, calibration, likely label errors)",
     _cli_inspect.add_arguments, _cli_inspect.inspect),
]


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sktransfer", epilog=common.EPILOG,
        description="Transfer learning for folders of images (one subfolder per class).")
    parser.add_argument("--version", action="version", version=f"sktransfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary, add_arguments, run in _COMMANDS:
        command = sub.add_parser(name, help=summary, epilog=common.EPILOG)
        add_arguments(command)
        command.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sktransfer`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program's name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 success, 2 bad input (a folder, an image, an option), 3 a model
        file that cannot be read, 130 interrupted (Ctrl-C). An unexpected error is raised
        (exit code 1 for the interpreter).

    Raises
    ------
    SystemExit
        For ``--help`` and ``--version`` (code 0) and bad usage (code 2), from
        :mod:`argparse`.
    """
    from .errors import WeightsUnavailableError

    args = _build_parser().parse_args(argv)
    try:
        return args.func(args)
    except common.CliError as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except (ValueError, WeightsUnavailableError, FileNotFoundError) as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return common.EXIT_INPUT
    except KeyboardInterrupt:
        hint = ""
        if getattr(args, "checkpoint", None):
            hint = f"; run the same command again to resume from {args.checkpoint}"
        elif getattr(args, "dask", None):
            hint = f"; run the same command again to resume from the parts in {args.out}"
        print(f"sktransfer {args.command}: interrupted{hint}", file=sys.stderr)
        return common.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
