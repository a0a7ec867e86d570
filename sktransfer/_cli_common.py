"""What every command of the command line shares: exit codes, options, their parameters,
the predictions CSV and the fit report."""

from __future__ import annotations

import argparse
import csv
import importlib
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected exception: its traceback, and the interpreter's exit code
EXIT_INPUT = 2  # also argparse's own exit code for bad usage
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EPILOG = (f"exit codes: {EXIT_OK} success, {EXIT_INPUT} bad usage or input (folder, image, "
          f"option), {EXIT_MODEL} unreadable model file, {EXIT_INTERRUPTED} interrupted "
          f"(Ctrl-C), {EXIT_ERROR} unexpected error")

#: What the fine-tuning options mean when not given (the --help texts say so).
FINETUNE_DEFAULTS = {"unfreeze": 1, "max_epochs": 10, "freeze_epochs": 2}


class CliError(Exception):
    """An error to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- options
def add_backbone_options(p: argparse.ArgumentParser, model_default: str | None = None,
                         model_help: str | None = None, weights_help: str | None = None) -> None:
    """The network and where it runs: read by :func:`backbone_params`."""
    p.add_argument("--model", default=model_default or "efficientnet_b0",
                   help=model_help or "torchvision model name, or package.module:factory "
                                      "returning an nn.Module (default: efficientnet_b0)")
    p.add_argument("--weights", default="DEFAULT",
                   help=weights_help or "weights name (DEFAULT, IMAGENET1K_V1...), a local "
                                        "weights file, or 'none' for random init (default: "
                                        "DEFAULT)")
    p.add_argument("--image-size", type=int, default=None, help="crop size fed to the network")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Strategy, cross-validation and fine-tuning: read by :func:`cv_folds` and
    :func:`training_params`."""
    p.add_argument("--strategy", choices=["frozen", "finetune", "auto"], default="frozen",
                   help="frozen features + logistic regression (ridge for regression), "
                        "fine-tuning, or the best of both by cross-validation (default: "
                        "frozen)")
    p.add_argument("--cv", type=int, default=None,
                   help="cross-validation folds for the report (default: 3 for auto, else "
                        "none)")
    p.add_argument("--unfreeze", default=None, type=lambda v: v if v == "all" else int(v),
                   help="layer groups to fine-tune, or 'all' (default: 1; with "
                        "--unlabelled: DomainAdaptationClassifier's, all)")
    p.add_argument("--epochs", type=int, default=None,
                   help="fine-tuning epochs (default: 10; with --unlabelled: 15)")
    p.add_argument("--freeze-epochs", type=int, default=None,
                   help="head-only epochs before unfreezing (default: 2; with "
                        "--unlabelled: 0)")
    p.add_argument("--lr", default="1e-3", type=lambda v: v if v == "auto" else float(v),
                   help="head learning rate, or 'auto' for the LR finder's suggestion "
                        "(default: 1e-3)")
    p.add_argument("--augment", action="store_true", help="training-time augmentation")
    p.add_argument("--adapter", choices=["lora"], default=None,
                   help="fine-tuning: train low-rank adapters (LoRA) in the --unfreeze "
                        "groups instead of their weights (merged into them after training)")
    p.add_argument("--adapter-rank", type=int, default=None, metavar="R",
                   help="with --adapter: the adapters' rank (default: 8)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How a training run starts and resumes: read by :func:`training_params`."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="fine-tuning: save a checkpoint in DIR after every epoch; after an "
                        "interruption the same command resumes")


# --------------------------------------------------------------------------- parameters
# the schemes of backbone specs (``timm:name``...), told from ``module:factory``
BACKBONE_SCHEMES = ("torchvision", "timm", "hf-hub", "open_clip")


def resolve_model(spec: str, seed: int = 0):
    """A backbone spec (a torchvision name, ``timm:...``, ``open_clip:...``), or
    ``package.module:factory`` called to build an ``nn.Module``.

    The factory runs seeded, so randomly initialised layers are the same on every run.
    """
    if ":" not in spec or spec.partition(":")[0] in BACKBONE_SCHEMES:
        return spec
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"--model {spec}: cannot import {attr!r} from {module_name!r}: {exc}"
                       ) from None
    from torch import nn

    from ._seeding import seeded

    with seeded(seed):
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) \
            else factory
    if not isinstance(model, nn.Module):
        raise CliError(f"--model {spec}: the factory returned {type(model).__name__}, "
                       "not a torch.nn.Module")
    return model


def backbone_params(args) -> dict:
    """The backbone options as an estimator's network, weights, size, device and batch."""
    params = {"model": resolve_model(args.model, getattr(args, "seed", 0)),
              "weights": None if args.weights.lower() == "none" else args.weights,
              "device": args.device, "batch_size": args.batch_size}
    if args.image_size:
        params["image_size"] = args.image_size
    return params


def cv_folds(args) -> int:
    """Cross-validation folds: --cv, else 3 for ``--strategy auto`` and none (0) otherwise."""
    return args.cv if args.cv is not None else (3 if args.strategy == "auto" else 0)


def kfold(args, n_images: int):
    """Shuffled folds over ``n_images`` images, None without cross-validation."""
    from sklearn.model_selection import KFold

    folds = cv_folds(args)
    if folds and n_images < folds:
        raise CliError(f"--cv {folds} needs at least {folds} images")
    return KFold(folds, shuffle=True, random_state=args.seed) if folds else None


def training_params(args, defaults: dict) -> dict:
    """The training and run options as a fine-tuner's parameters.

    ``--unfreeze``, ``--epochs`` and ``--freeze-epochs`` not given take their value in
    ``defaults`` (which holds ``max_epochs``), or are left to the estimator where it has
    none; head-only epochs are capped one below the epochs.
    """
    given = {"unfreeze": args.unfreeze, "max_epochs": args.epochs,
             "freeze_epochs": args.freeze_epochs}
    training = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    if "freeze_epochs" in training:
        training["freeze_epochs"] = min(training["freeze_epochs"], training["max_epochs"] - 1)
    lr = args.lr if args.lr == "auto" else float(args.lr)
    adapter = {}
    if getattr(args, "adapter", None):
        adapter["adapter"] = args.adapter
        if args.adapter_rank is not None:
            adapter["adapter_rank"] = args.adapter_rank
    elif getattr(args, "adapter_rank", None) is not None:
        raise CliError("--adapter-rank needs --adapter lora")
    return {**training, "lr": lr, "augment": args.augment, "random_state": args.seed,
            "checkpoint": args.checkpoint, **adapter}


# --------------------------------------------------------------------------- files
def warn_skipped(skipped: list[Path]) -> None:
    """A note on standard error naming the files skipped for want of an image extension."""
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"note: skipped {len(skipped)} file(s) without an image extension: {shown}{more}",
              file=sys.stderr)


def write_csv(path: Path, header: list[str], rows) -> None:
    """Write ``header`` then ``rows`` to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- model files
def read_model_file(path: str, architecture: str | None = None):
    """What a model file holds: a .joblib file's object, a .safetensors export's estimator
    (pickle-free) or a .onnx graph's :class:`~sktransfer.OnnxModel`; a file that cannot be
    read exits with ``EXIT_MODEL``."""
    import joblib

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".safetensors":
            from .exchange import import_model

            module = resolve_model(architecture) if architecture else None
            return import_model(path, model=module)  # pickle-free: no code from the file
        if suffix == ".onnx":
            if not Path(path).is_file():
                raise FileNotFoundError(path)
            from .deploy import OnnxModel

            return OnnxModel(path)
        return joblib.load(path)
    except FileNotFoundError:
        raise CliError(f"model file not found: {path}", EXIT_MODEL) from None
    except Exception as exc:
        raise CliError(f"cannot read model file {path}: {type(exc).__name__}: "
                       f"{exc}", EXIT_MODEL) from None


# --------------------------------------------------------------------------- predictions
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
    if not hasattr(model, "predict_proba") and getattr(model, "task_", None) == "classifier":
        # an ONNX graph of a classifier without probabilities (SVC): its labels only
        header = ["path", "label"]
        rows = ([str(p), str(lab)] for p, lab in zip(
            paths, model.predict([str(p) for p in paths]), strict=True))
    elif not hasattr(model, "predict_proba"):
        header, rows = _regression_rows(model, paths)
    elif getattr(model, "multioutput_", False):  # one task per column
        labels, proba = model._predict_and_proba([str(p) for p in paths])
        header = ["path", *[f"label_{j}" for j in range(labels.shape[1])],
                  *[f"proba_{j}_{c}" for j, classes in enumerate(model.classes_)
                    for c in classes]]
        rows = ([str(p), *map(str, row), *(f"{v:.6f}" for v in np.concatenate(
                    [task[i] for task in proba]))]
                for i, (p, row) in enumerate(zip(paths, labels, strict=True)))
    else:
        rejects = getattr(model, "reject_label", None) is not None
        if rejects:  # labels ("none of these" too) and probabilities from one pass
            labels, proba = model._predict_and_proba([str(p) for p in paths])
        else:
            proba = model.predict_proba([str(p) for p in paths])
        if getattr(model, "multilabel_", False):
            labels = [";".join(str(c) for c, v in zip(model.classes_, row, strict=True)
                               if v >= 0.5) for row in proba]
        elif not rejects:
            labels = model.classes_[proba.argmax(axis=1)]
        header = ["path", "label", *[f"proba_{c}" for c in model.classes_]]
        rows = ([str(p), str(lab), *(f"{v:.6f}" for v in row)]
                for p, lab, row in zip(paths, labels, proba, strict=True))
    if out:
        write_csv(Path(out), header, rows)
        print(f"wrote {len(paths)} predictions to {out}", file=sys.stderr)
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    return EXIT_OK


# --------------------------------------------------------------------------- fit
def fit_scored(estimator, X, y, splitter) -> float | None:
    """Fit ``estimator``; with a splitter, first its mean cross-validated score."""
    from sklearn.model_selection import cross_val_score

    cv_score = None if splitter is None else cross_val_score(estimator, X, y, cv=splitter).mean()
    estimator.fit(X, y)
    return cv_score


def save_and_report(estimator, args, chosen: str, start: float, cv_score: float | None,
                    cv_folds: int, metric: str) -> None:
    """Write the model to ``-o`` and print what ``fit`` did: strategy, time since
    ``start``, cross-validated score, cost, where it went."""
    import joblib

    from ._cost import fit_cost
    from .io import atomic_dump

    seconds = time.perf_counter() - start
    if Path(args.out).suffix == ".safetensors":
        from .exchange import export_model

        export_model(estimator, args.out)
    else:
        atomic_dump(estimator, args.out, dump=joblib.dump)
    report = f"strategy: {chosen}; fit time {seconds:.1f} s"
    if cv_score is not None:
        report += f"; {cv_folds}-fold cv {metric} {cv_score:.3f}"
    print(report)
    final = fit_cost(estimator)
    if final is not None:
        print(f"final fit (network): {final}")
    print(f"wrote model to {args.out}")
