"""The ``inspect`` command: an error-analysis report of a saved classifier on a labelled
folder (top losses with heat maps, confusion matrix, reliability diagram, label issues)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import _cli_common as common

#: The files of a report, in the order the summary lists them.
REPORT_FILES = ("top_losses.png", "confusion_matrix.png", "reliability.png",
                "top_losses.csv", "label_issues.csv")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``inspect`` command's options."""
    p.add_argument("model_file", help="a classifier written by 'sktransfer fit' (.joblib or "
                                      ".safetensors) or 'sktransfer export' (.onnx: no heat "
                                      "maps)")
    p.add_argument("folder", help="labelled images the model did not train on: one "
                                  "subfolder per class, named as its classes")
    p.add_argument("-o", "--out", default="inspect_report", metavar="DIR",
                   help="the report folder (default: inspect_report)")
    p.add_argument("--top", type=int, default=9, metavar="K",
                   help="images in the top-losses picture (default: 9)")
    p.add_argument("--cv", type=int, default=None, metavar="N",
                   help="label issues from N-fold cross-validation (N fits of a copy of "
                        "the model on FOLDER: slow) instead of the model's own predictions "
                        "(right when FOLDER is held out from its training)")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="for a .safetensors model fine-tuned from a custom network: the "
                        "factory building that architecture")


def _labelled_folder(folder: str, classes: np.ndarray) -> tuple[list[str], np.ndarray]:
    from .folders import load_image_folder

    paths, labels, skipped = load_image_folder(folder)
    common.warn_skipped(skipped)
    y = np.asarray(labels)
    # folder names are strings; the model's classes may be numbers
    by_name = {str(c): c for c in classes.tolist()}
    unknown = sorted(set(y.tolist()) - set(by_name))
    if unknown:
        raise common.CliError(f"{folder}: the class folder(s) {unknown} are not classes of "
                              f"the model {sorted(by_name)}")
    return [str(p) for p in paths], np.asarray([by_name[v] for v in y.tolist()])


def inspect(args) -> int:
    """Write the report of ``model_file`` on ``folder`` to ``--out`` and print a summary."""
    if args.top < 1:
        raise common.CliError(f"--top {args.top}: show at least one image")
    if args.cv is not None and args.cv < 2:
        raise common.CliError(f"--cv {args.cv}: cross-validation needs at least 2 folds")
    model = common.read_model_file(args.model_file, args.model)
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise common.CliError(f"{args.model_file} does not hold a classifier with "
                              "probabilities; inspect needs one", common.EXIT_MODEL)
    if getattr(model, "multilabel_", False) or getattr(model, "task_", "") == "multilabel":
        raise common.CliError(f"{args.model_file} is a multi-label classifier; inspect "
                              "reads one label per image (a class subfolder)")
    if args.cv is not None and Path(args.model_file).suffix.lower() == ".onnx":
        raise common.CliError("--cv refits the model, which an ONNX graph cannot do")
    classes = np.asarray(model.classes_)
    X, y = _labelled_folder(args.folder, classes)
    try:
        report = _report(model, X, y, args)
    except ImportError as exc:  # matplotlib or pandas: the 'plot' extra
        raise common.CliError(str(exc)) from None
    print(report)
    return common.EXIT_OK


def _report(model, X: list, y: np.ndarray, args) -> str:
    """Write the report's files; the summary to print."""
    import matplotlib.pyplot as plt  # the 'plot' extra (its ImportError is reported)
    from sklearn.base import clone

    from ._fixed_predictions import FixedPredictions
    from ._label_issues import issue_table
    from ._losses_table import encode
    from .inspect import most_confused, plot_top_losses, top_losses
    from .metrics import expected_calibration_error, plot_reliability

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(model, "reject_label", None) is not None:  # its labels from the same pass
        labels, proba = model._predict_and_proba(X)
    else:
        labels, proba = None, model.predict_proba(X)
    proba = np.asarray(proba, dtype=np.float64)
    proba /= proba.sum(axis=1, keepdims=True)  # float32 rows summing to 1 within 1e-7
    known = FixedPredictions(model, X, proba, labels)
    classes = known.classes_

    losses = top_losses(known, X, y, k=None)
    losses.to_csv(out / "top_losses.csv", index=False)
    worst = losses.head(args.top)
    figure = plot_top_losses(model, [X[i] for i in worst["index"]],
                             y[worst["index"].to_numpy()], k=args.top)
    figure.savefig(out / "top_losses.png", dpi=100, bbox_inches="tight")

    predicted = known.predict(X)
    _confusion_png(y, predicted, classes, getattr(model, "reject_label", None),
                   out / "confusion_matrix.png")

    ece = expected_calibration_error(y, known.proba, labels=classes)
    ax = plot_reliability(y, known.proba, labels=classes, label=Path(args.model_file).name)
    ax.figure.savefig(out / "reliability.png", dpi=100, bbox_inches="tight")
    plt.close(ax.figure)

    issues = issue_table(known if args.cv is None else clone(model), X, y,
                         cv="prefit" if args.cv is None else args.cv)
    issues.to_csv(out / "label_issues.csv", index=False)

    accuracy = float(np.mean(predicted == y))
    confused = most_confused(known, X, y).head(3)
    # log-loss in classes_' column order (sklearn's log_loss assumes sorted columns)
    seen = proba[np.arange(len(y)), encode(y, classes)]
    loss = float(-np.mean(np.log(np.clip(seen, np.finfo(np.float64).tiny, 1.0))))
    lines = [f"{len(X)} images, {len(classes)} classes; accuracy {accuracy:.3f}, "
             f"log-loss {loss:.3f}, expected calibration error {ece:.3f}"]
    if len(confused):
        lines.append("most confused (true -> predicted): " + ", ".join(
            f"{r.true} -> {r.predicted} ({r.count})" for r in confused.itertuples()))
    how = "its own predictions" if args.cv is None else f"{args.cv}-fold cross-validation"
    lines.append(f"{len(issues)} image(s) may be mislabelled (confident learning on {how})"
                 + (f", e.g. {issues['path'].iloc[0]} labelled "
                    f"{issues['given'].iloc[0]!r}, looks {issues['suggested'].iloc[0]!r}"
                    if len(issues) else ""))
    lines.append(f"report: {out}/ (" + ", ".join(REPORT_FILES) + ")")
    return "\n".join(lines)


def _confusion_png(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray,
                   reject_label: object, path: Path) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = list(classes)
    if reject_label is not None and (predicted == reject_label).any():
        labels.append(reject_label)  # a column for "none of these"
    size = 2.5 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(y, predicted, labels=labels, ax=ax,
                                            colorbar=False, xticks_rotation="vertical")
    ax.set_title("confusion matrix (rows: true class)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
