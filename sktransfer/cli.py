"""The ``sktransfer`` command line: extract, fit, predict on folders of images.

Exit codes: 0 success; 2 bad usage or bad input (folder layout, unreadable image, bad
option); 3 a model file that cannot be read; 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import sys
import time
from pathlib import Path

import numpy as np

from ._domain_options import ADAPTATION_METHODS, DEFAULT_METHOD

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3
EPILOG = ("exit codes: 0 success, 2 bad usage or input (folder, image, option), "
          "3 unreadable model file, 130 interrupted (Ctrl-C), 1 unexpected error")


class CliError(Exception):
    """An error to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- helpers
def resolve_model(spec: str, seed: int = 0):
    """A torchvision name, or ``package.module:factory`` called to build an ``nn.Module``.

    The factory runs seeded, so randomly initialised layers are the same on every run.
    """
    if ":" not in spec:
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


def resolve_weights(value: str):
    return None if value.lower() == "none" else value


def backbone_params(args) -> dict:
    params = {"model": resolve_model(args.model, getattr(args, "seed", 0)),
              "weights": resolve_weights(args.weights)}
    if args.image_size:
        params["image_size"] = args.image_size
    return params


def _warn_skipped(skipped: list[Path]) -> None:
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"note: skipped {len(skipped)} file(s) without an image extension: {shown}{more}",
              file=sys.stderr)


def _device_params(args) -> dict:
    return {"device": args.device, "batch_size": args.batch_size}


# --------------------------------------------------------------------------- commands
def cmd_extract(args) -> int:
    from ._extractor import PretrainedFeatureExtractor
    from .folders import list_images, load_image_folder

    try:
        paths, labels, skipped = load_image_folder(args.folder)
    except ValueError:
        paths, skipped = list_images([args.folder])
        labels = [""] * len(paths)
    _warn_skipped(skipped)
    out = Path(args.out)
    if out.suffix not in (".npy", ".csv", ".parquet"):
        raise CliError(f"--out {out}: use a .npy, .csv or .parquet file name")
    if args.dask is not None and out.suffix != ".parquet":
        raise CliError(f"--out {out}: --dask writes a partitioned parquet dataset; use a "
                       ".parquet name")
    if args.partition_size < 1:
        raise CliError(f"--partition-size {args.partition_size}: must be at least 1")
    extractor = PretrainedFeatureExtractor(
        **backbone_params(args), layer=args.layer, verbose=not args.quiet,
        random_state=getattr(args, "seed", 0), **_device_params(args)
    ).fit()
    if args.dask is not None:
        return _extract_on_dask(args, extractor, [str(p) for p in paths], labels, out)
    embeddings = extractor.transform([str(p) for p in paths])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, embeddings)
        index = out.with_name(out.stem + "_index.csv")
        _write_csv(index, ["path", "label"], zip(map(str, paths), labels, strict=True))
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out} "
              f"(rows in the order of {index})")
    else:
        import pandas as pd

        frame = pd.DataFrame(embeddings, columns=extractor.get_feature_names_out())
        frame.insert(0, "label", labels)
        frame.insert(0, "path", [str(p) for p in paths])
        frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out)
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
    return EXIT_OK


def _extract_on_dask(args, extractor, paths: list[str], labels: list[str], out: Path) -> int:
    try:
        from ._parquet_job import extract_to_parquet
        from .dask import connect
    except ImportError as exc:
        raise CliError(f"--dask needs Dask: pip install 'sktransfer[dask]' ({exc})") from None
    try:
        client = connect(args.dask)
    except OSError as exc:
        raise CliError(str(exc)) from None
    with client:
        computed, found = extract_to_parquet(
            extractor, paths, labels, out, client, partition_size=args.partition_size,
            progress=not args.quiet)
    resumed = f"; {found} were already written" if found else ""
    print(f"wrote {len(paths)} x {extractor.n_features_out_} embeddings to {out} "
          f"({computed + found} parquet parts{resumed})")
    return EXIT_OK


def build_estimator(args, strategy: str):
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline

    from ._extractor import PretrainedFeatureExtractor
    from ._finetune import FineTuneClassifier
    from ._regressor import FineTuneRegressor

    regression = args.task == "regression"
    common = {**backbone_params(args), **_device_params(args)}
    if strategy == "frozen":
        last = RidgeCV(alphas=np.logspace(-3, 3, 13)) if regression else \
            LogisticRegression(max_iter=2000)
        return make_pipeline(PretrainedFeatureExtractor(**common, random_state=args.seed),
                             last)
    lr = args.lr if args.lr == "auto" else float(args.lr)
    cls = FineTuneRegressor if regression else FineTuneClassifier
    if strategy == "adapt":
        from ._adaptation import DomainAdaptationClassifier

        cls = DomainAdaptationClassifier
        # what the user did not set is the estimator's default, chosen for adaptation
        given = {"method": args.adapt, "adaptation_weight": args.adaptation_weight,
                 "unfreeze": args.unfreeze, "max_epochs": args.epochs,
                 "freeze_epochs": args.freeze_epochs}
        training = {k: v for k, v in given.items() if v is not None}
        epochs = training.get("max_epochs", cls().max_epochs)
        if "freeze_epochs" in training:
            training["freeze_epochs"] = min(training["freeze_epochs"], epochs - 1)
    else:
        training = finetune_training(args)
    return cls(
        **common, **training, lr=lr, augment=args.augment, random_state=args.seed,
        verbose=not args.quiet and strategy in ("finetune", "adapt"),
        checkpoint=args.checkpoint,
    )


def finetune_training(args) -> dict:
    """Depth and epochs of a fine-tuning command: the options, else the CLI's defaults."""
    epochs = 10 if args.epochs is None else args.epochs
    freeze = 2 if args.freeze_epochs is None else args.freeze_epochs
    return {"unfreeze": 1 if args.unfreeze is None else args.unfreeze,
            "max_epochs": epochs, "freeze_epochs": min(freeze, epochs - 1)}


def _training_data(args):
    """Images, targets, a description, and the cross-validation splitter for ``args``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    from .folders import list_images, load_image_folder, load_targets_table

    cv_folds = args.cv if args.cv is not None else (3 if args.strategy == "auto" else 0)
    if args.task == "regression":
        if not args.targets:
            raise CliError("--task regression needs --targets FILE.csv (an image column "
                           "and numeric target columns)")
        columns = args.target_columns.split(",") if args.target_columns else None
        paths, y = load_targets_table(args.folder, args.targets, columns)
        about = f"{len(paths)} images, targets: {', '.join(map(str, y.columns))}"
        y = y.iloc[:, 0] if y.shape[1] == 1 else y
        if cv_folds and len(paths) < cv_folds:
            raise CliError(f"--cv {cv_folds} needs at least {cv_folds} images")
        splitter = KFold(cv_folds, shuffle=True, random_state=args.seed) if cv_folds else None
        return [str(p) for p in paths], y, about, splitter, cv_folds
    if args.targets:
        raise CliError("--targets is for --task regression; classification reads the "
                       "labels from the class subfolders")
    paths, labels, skipped = load_image_folder(args.folder)
    _warn_skipped(skipped)
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    about = f"{len(paths)} images, {len(classes)} classes: " + ", ".join(
        f"{c} ({n})" for c, n in zip(classes, counts, strict=True))
    if cv_folds and counts.min() < cv_folds:
        raise CliError(f"class {classes[counts.argmin()]!r} has {counts.min()} images; "
                       f"--cv {cv_folds} needs at least {cv_folds} per class")
    splitter = StratifiedKFold(cv_folds, shuffle=True, random_state=args.seed) if cv_folds \
        else None
    paths = [str(p) for p in paths]
    if args.unlabelled:
        target, skipped = list_images([args.unlabelled])
        _warn_skipped(skipped)
        about += (f"; {len(target)} unlabelled images (domain adaptation: "
                  f"{args.adapt or DEFAULT_METHOD})")
        paths += [str(p) for p in target]
        y = np.concatenate([y.astype(object), np.full(len(target), None, dtype=object)])
        # source and target rows split together; scores count the labelled rows
        splitter = KFold(cv_folds, shuffle=True, random_state=args.seed) if cv_folds \
            else None
    return paths, y, about, splitter, cv_folds


def _cost_scoring(args) -> dict:
    """GridSearchCV scorers: the task's score, and what each cross-validation fit cost."""
    from sklearn.metrics import get_scorer

    from ._cost import energy_available, fit_cost

    def cost_of(field):
        def scorer(estimator, X, y):
            cost = fit_cost(estimator)
            value = None if cost is None else getattr(cost, field)
            return float("nan") if value is None else float(value)
        return scorer

    scoring = {"score": get_scorer("r2" if args.task == "regression" else "accuracy"),
               "flops": cost_of("total_flops")}
    if energy_available():
        scoring["energy_kwh"] = cost_of("energy_kwh")
    return scoring


def _print_strategy_table(results: dict, metric: str) -> None:
    """One row per candidate: cv score next to what one cross-validation fit cost."""
    energy = "mean_test_energy_kwh" in results
    print(f"  {'strategy':<22} {'cv ' + metric:>11} {'fit s':>7} {'TFLOP':>8}"
          + (f" {'Wh':>8}" if energy else "") + "   (per cross-validation fit)")
    for i, params in enumerate(results["params"]):
        name = f"finetune unfreeze={params['model__unfreeze']}" \
            if "model__unfreeze" in params else "frozen"
        row = (f"  {name:<22} {results['mean_test_score'][i]:>11.3f} "
               f"{results['mean_fit_time'][i]:>7.3g} "
               f"{results['mean_test_flops'][i] / 1e12:>8.3g}")
        if energy:
            row += f" {results['mean_test_energy_kwh'][i] * 1000:>8.3g}"
        print(row)


def cmd_fit(args) -> int:
    import joblib
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline

    from .io import atomic_dump

    safe = Path(args.out).suffix == ".safetensors"

    def save(estimator) -> None:
        if safe:
            from .exchange import export_model

            export_model(estimator, args.out)
        else:
            atomic_dump(estimator, args.out, dump=joblib.dump)

    if args.task == "segmentation":
        from ._cli_segmentation import cmd_fit_segmentation

        return cmd_fit_segmentation(args, save)
    if args.masks:
        raise CliError("--masks is for --task segmentation")
    if safe and args.strategy != "finetune" and not args.unlabelled:
        raise CliError(f"-o {args.out}: .safetensors files hold fine-tuned models only "
                       "(--strategy finetune); other strategies end in a scikit-learn "
                       "classifier, saved as .joblib")
    if args.unlabelled:
        if args.task != "classification":
            raise CliError("--unlabelled adapts a classifier; it does not apply to "
                           "--task regression")
        if args.strategy == "auto":
            raise CliError("--unlabelled fine-tunes a DomainAdaptationClassifier; "
                           "--strategy auto does not apply (use --cv for a score)")
        args.strategy = "adapt"
    X, y, about, splitter, cv_folds = _training_data(args)
    print(about)
    metric = "R^2" if args.task == "regression" else "accuracy"
    start = time.perf_counter()
    cv_score, chosen = None, args.strategy
    if args.strategy == "auto":
        grid = [{"model": [build_estimator(args, "frozen")]},
                {"model": [build_estimator(args, "auto")], "model__unfreeze": [0, 1, 2]}]
        search = GridSearchCV(Pipeline([("model", build_estimator(args, "frozen"))]), grid,
                              cv=splitter, error_score="raise", scoring=_cost_scoring(args),
                              refit="score").fit(X, y)
        estimator = search.best_estimator_.named_steps["model"]
        cv_score = search.best_score_
        chosen = "frozen" if isinstance(estimator, Pipeline) else \
            f"finetune (unfreeze={estimator.unfreeze})"
        _print_strategy_table(search.cv_results_, metric)
    else:
        estimator = build_estimator(args, args.strategy)
        if splitter is not None:
            cv_score = cross_val_score(estimator, X, y, cv=splitter).mean()
        estimator.fit(X, y)
    seconds = time.perf_counter() - start
    save(estimator)
    if args.unlabelled:
        chosen, metric = (f"domain adaptation ({estimator.method})",
                          "accuracy (labelled images)")
    report_fit(estimator, chosen, seconds, cv_score, cv_folds, metric, args.out)
    check = getattr(estimator, "adaptation_check_", None)
    if check is not None:
        verdict = "LOOKS HARMFUL" if check.looks_harmful else "no sign of harm"
        print(f"adaptation check ({check.signal} on the unlabelled images): adapted "
              f"{check.adapted:.3f}, source-only {check.source_only:.3f}: {verdict}; "
              f"the two agree on {check.agreement:.0%} of them")
    return EXIT_OK


def report_fit(estimator, chosen: str, seconds: float, cv_score: float | None,
               cv_folds: int, metric: str, out: str) -> None:
    """Print what ``fit`` did: strategy, time, cross-validated score, cost, where it went."""
    from ._cost import fit_cost

    report = f"strategy: {chosen}; fit time {seconds:.1f} s"
    if cv_score is not None:
        report += f"; {cv_folds}-fold cv {metric} {cv_score:.3f}"
    print(report)
    final = fit_cost(estimator)
    if final is not None:
        print(f"final fit (network): {final}")
    print(f"wrote model to {out}")


def load_model(path: str, architecture: str | None = None):
    import joblib

    try:
        if Path(path).suffix == ".safetensors":
            from .exchange import import_model

            module = resolve_model(architecture) if architecture else None
            model = import_model(path, model=module)  # pickle-free: no code from the file
        else:
            model = joblib.load(path)
    except FileNotFoundError:
        raise CliError(f"model file not found: {path}", EXIT_MODEL) from None
    except Exception as exc:
        raise CliError(f"cannot read model file {path}: {type(exc).__name__}: {exc}",
                       EXIT_MODEL) from None
    from sklearn.base import is_regressor

    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    if not classifier and not (is_regressor(model) and hasattr(model, "predict")):
        raise CliError(f"{path} does not hold a fitted classifier or regressor "
                       f"({type(model).__name__})", EXIT_MODEL)
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


def cmd_predict(args) -> int:
    from .folders import list_images

    model = load_model(args.model_file, args.model)
    paths, skipped = list_images(args.inputs)
    _warn_skipped(skipped)
    if hasattr(model, "n_classes_") and hasattr(model, "ignore_index"):  # a segmenter
        from ._cli_segmentation import write_masks

        return write_masks(model, paths, args.out)
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
    if args.out:
        _write_csv(Path(args.out), header, rows)
        print(f"wrote {len(paths)} predictions to {args.out}", file=sys.stderr)
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    return EXIT_OK


def _write_csv(path: Path, header: list[str], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- parser
def _add_backbone_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_b0",
                   help="torchvision model name, or package.module:factory returning an "
                        "nn.Module (default: efficientnet_b0)")
    p.add_argument("--weights", default="DEFAULT",
                   help="weights name (DEFAULT, IMAGENET1K_V1...), a local weights file, or "
                        "'none' for random init (default: DEFAULT)")
    p.add_argument("--image-size", type=int, default=None, help="crop size fed to the network")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sktransfer", epilog=EPILOG,
        description="Transfer learning for folders of images (one subfolder per class).")
    parser.add_argument("--version", action="version", version=f"sktransfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="embed images with a frozen pretrained network",
                       epilog=EPILOG)
    p.add_argument("folder", help="folder of images, flat or one subfolder per class")
    p.add_argument("-o", "--out", required=True, help="output: .npy, .csv or .parquet")
    p.add_argument("--layer", action="append", default=None,
                   help="intermediate layer to pool (repeat for several)")
    p.add_argument("--dask", default=None, metavar="SPEC",
                   help="run on Dask: local:N (a local cluster of N worker processes) or a "
                        "scheduler address (tcp://host:8786); writes -o NAME.parquet as a "
                        "partitioned dataset and resumes a stopped run (needs "
                        "sktransfer[dask])")
    p.add_argument("--partition-size", type=int, default=512,
                   help="with --dask: images per task and per part file (default: 512)")
    _add_backbone_options(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("fit", help="train a classifier, regressor or segmenter and save it",
                       epilog=EPILOG)
    p.add_argument("folder", help="classification: folder with one subfolder of images per "
                                  "class; regression: the folder the --targets paths are "
                                  "in; segmentation: the images (searched recursively)")
    p.add_argument("--task", choices=["classification", "regression", "segmentation"],
                   default="classification",
                   help="classification (labels from subfolders), regression (continuous "
                        "targets from --targets) or segmentation (a mask per image from "
                        "--masks) (default: classification)")
    p.add_argument("--masks", default=None, metavar="DIR",
                   help="segmentation: folder of label images (PNG, one class index per "
                        "pixel), paired with FOLDER's images by file name")
    p.add_argument("--ignore-index", type=int, default=255,
                   help="segmentation: the mask value of unannotated pixels (default: 255)")
    p.add_argument("--targets", default=None, metavar="FILE.csv",
                   help="regression: CSV with an image column ('path', else the first; "
                        "relative to FOLDER) and numeric target columns")
    p.add_argument("--target-columns", default=None, metavar="A,B",
                   help="regression: the target columns to use (default: all but the image "
                        "column)")
    p.add_argument("-o", "--out", required=True,
                   help="model file to write: .joblib, or .safetensors (pickle-free, "
                        "fine-tuned models)")
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
    p.add_argument("--unlabelled", default=None, metavar="DIR",
                   help="domain adaptation: unlabelled images of the kind the model will "
                        "predict (searched recursively); fine-tunes a "
                        "DomainAdaptationClassifier on FOLDER's labelled images and these")
    p.add_argument("--adapt", choices=list(ADAPTATION_METHODS), default=None,
                   help="with --unlabelled: the adaptation loss (default: "
                        f"DomainAdaptationClassifier's, {DEFAULT_METHOD})")
    p.add_argument("--adaptation-weight", type=float, default=None,
                   help="with --unlabelled: the adaptation loss's final weight (default: "
                        "DomainAdaptationClassifier's, 1.0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="fine-tuning: save a checkpoint in DIR after every epoch; after an "
                        "interruption the same command resumes")
    _add_backbone_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict with a saved model; writes CSV (PNG masks "
                                       "for a segmentation model)", epilog=EPILOG)
    p.add_argument("model_file", help="a model written by 'sktransfer fit' (.joblib, or "
                                      ".safetensors read without unpickling)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="for a .safetensors model fine-tuned from a custom network: the "
                        "factory building that architecture")
    p.add_argument("-o", "--out", default=None,
                   help="CSV file (default: standard output); for a segmentation model, the "
                        "folder that receives one PNG mask per image")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from .errors import WeightsUnavailableError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except (ValueError, WeightsUnavailableError, FileNotFoundError) as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        hint = ""
        if getattr(args, "checkpoint", None):
            hint = f"; run the same command again to resume from {args.checkpoint}"
        elif getattr(args, "dask", None):
            hint = f"; run the same command again to resume from the parts in {args.out}"
        print(f"sktransfer {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
