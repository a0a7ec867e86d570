"""The ``fit`` command: its options, and training a classifier, regressor or adapter."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from . import _cli_common as common
from ._domain_options import ADAPTATION_METHODS, DEFAULT_METHOD


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fit`` command's options, every task's (segmentation's are read elsewhere)."""
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
                   help="CSV with an image column ('path', else the first; relative to "
                        "FOLDER) and target columns: numbers for regression; for "
                        "classification, labels instead of class subfolders (several "
                        "columns: one task each on one shared network; an empty cell: no "
                        "label there)")
    p.add_argument("--target-columns", default=None, metavar="A,B",
                   help="with --targets: the target columns to use (default: all but the "
                        "image column)")
    p.add_argument("-o", "--out", required=True,
                   help="model file to write: .joblib, or .safetensors (pickle-free, "
                        "fine-tuned models)")
    common.add_training_options(p)
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
    p.add_argument("--validation-fraction", type=float, default=None, metavar="F",
                   help="fine-tuning: share of the images held out for early stopping; a "
                        "classifier (not with --unlabelled) also calibrates its "
                        "probabilities on them (temperature scaling) (default: none held "
                        "out)")
    p.add_argument("--teacher", default=None, metavar="MODEL.joblib",
                   help="fine-tuning: distil a fitted classifier (a model saved by 'fit') "
                        "into this one; with --unlabelled-pool its images (no labels) learn "
                        "from the teacher alone")
    p.add_argument("--unlabelled-pool", default=None, metavar="DIR",
                   help="with --teacher: more images without labels (searched "
                        "recursively)")
    p.add_argument("--reject-label", default=None, metavar="LABEL",
                   help="fine-tuned classifiers: the label predicted for images unlike "
                        "the training images (e.g. unknown); the novelty threshold keeps "
                        "95%% of the training images")
    common.add_run_options(p)
    common.add_backbone_options(p)


def build_estimator(args, strategy: str):
    """The estimator ``strategy`` (frozen, finetune, auto's fine-tuner, adapt) stands for."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline

    from ._extractor import PretrainedFeatureExtractor
    from ._finetune import FineTuneClassifier
    from ._regressor import FineTuneRegressor

    regression = args.task == "regression"
    network = common.backbone_params(args)
    if strategy == "frozen":
        last = RidgeCV(alphas=np.logspace(-3, 3, 13)) if regression else \
            LogisticRegression(max_iter=2000)
        return make_pipeline(PretrainedFeatureExtractor(**network, random_state=args.seed),
                             last)
    cls = FineTuneRegressor if regression else FineTuneClassifier
    defaults = common.FINETUNE_DEFAULTS
    adaptation = {}
    if strategy == "adapt":
        from ._adaptation import DomainAdaptationClassifier

        cls = DomainAdaptationClassifier
        # what the user did not set is the estimator's default, chosen for adaptation
        defaults = {"max_epochs": cls().max_epochs}
        given = {"method": args.adapt, "adaptation_weight": args.adaptation_weight}
        adaptation = {k: v for k, v in given.items() if v is not None}
    trust = {}
    if args.validation_fraction is not None:
        trust["validation_fraction"] = args.validation_fraction
    if args.reject_label is not None:
        if regression:
            raise common.CliError("--reject-label is for classifiers, not --task regression")
        trust["reject_label"] = args.reject_label
    if args.teacher is not None:
        if regression or strategy != "finetune":
            raise common.CliError("--teacher distils into a fine-tuned classifier "
                                  "(--strategy finetune, classification)")
        trust["teacher"] = common.read_model_file(args.teacher, None)
    return cls(**network, **common.training_params(args, defaults), **adaptation, **trust,
               verbose=not args.quiet and strategy in ("finetune", "adapt"))


def _training_data(args):
    """Images, targets, a description, and the cross-validation splitter for ``args``."""
    from sklearn.model_selection import StratifiedKFold

    from .folders import list_images, load_image_folder, load_targets_table

    folds = common.cv_folds(args)
    if args.task == "regression":
        if not args.targets:
            raise common.CliError("--task regression needs --targets FILE.csv (an image "
                                  "column and numeric target columns)")
        columns = args.target_columns.split(",") if args.target_columns else None
        paths, y = load_targets_table(args.folder, args.targets, columns)
        about = f"{len(paths)} images, targets: {', '.join(map(str, y.columns))}"
        y = y.iloc[:, 0] if y.shape[1] == 1 else y
        return [str(p) for p in paths], y, about, common.kfold(args, len(paths)), folds
    if args.targets:  # labels from a CSV: one task per column (several: multi-output)
        columns = args.target_columns.split(",") if args.target_columns else None
        paths, frame = load_targets_table(args.folder, args.targets, columns, labels=True)
        y = frame.iloc[:, 0].to_numpy() if frame.shape[1] == 1 else frame.to_numpy()
        about = (f"{len(paths)} images, label columns: "
                 + ", ".join(f"{name} ({frame[name].nunique()} classes)" for name in frame))
        return [str(p) for p in paths], y, about, common.kfold(args, len(paths)), folds
    paths, labels, skipped = load_image_folder(args.folder)
    common.warn_skipped(skipped)
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    about = f"{len(paths)} images, {len(classes)} classes: " + ", ".join(
        f"{c} ({n})" for c, n in zip(classes, counts, strict=True))
    if folds and counts.min() < folds:
        raise common.CliError(f"class {classes[counts.argmin()]!r} has {counts.min()} "
                              f"images; --cv {folds} needs at least {folds} per class")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=args.seed) if folds \
        else None
    paths = [str(p) for p in paths]
    if args.unlabelled:
        target, skipped = list_images([args.unlabelled])
        common.warn_skipped(skipped)
        about += (f"; {len(target)} unlabelled images (domain adaptation: "
                  f"{args.adapt or DEFAULT_METHOD})")
        # source and target rows split together; scores count the labelled rows
        splitter = common.kfold(args, len(paths))
        paths += [str(p) for p in target]
        y = np.concatenate([y.astype(object), np.full(len(target), None, dtype=object)])
    return paths, y, about, splitter, folds


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


def fit(args) -> int:
    """``fit --task classification|regression``, with --unlabelled a domain adapter."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    if args.masks:
        raise common.CliError("--masks is for --task segmentation")
    if Path(args.out).suffix == ".safetensors" and args.strategy != "finetune" \
            and not args.unlabelled:
        raise common.CliError(f"-o {args.out}: .safetensors files hold fine-tuned models "
                              "only (--strategy finetune); other strategies end in a "
                              "scikit-learn classifier, saved as .joblib")
    if args.unlabelled:
        if args.task != "classification":
            raise common.CliError("--unlabelled adapts a classifier; it does not apply to "
                                  "--task regression")
        if args.strategy == "auto":
            raise common.CliError("--unlabelled fine-tunes a DomainAdaptationClassifier; "
                                  "--strategy auto does not apply (use --cv for a score)")
        args.strategy = "adapt"
    tuning_only = [name for name, value in (("--reject-label", args.reject_label),
                                            ("--validation-fraction",
                                             args.validation_fraction),
                                            ("--teacher", args.teacher),
                                            ("--adapter", args.adapter))
                   if value is not None]
    if args.unlabelled_pool and not args.teacher:
        raise common.CliError("--unlabelled-pool needs --teacher (the images without "
                              "labels learn from it)")
    if tuning_only and args.strategy not in ("finetune", "adapt"):
        raise common.CliError(f"{tuning_only[0]} applies to fine-tuning (--strategy "
                              f"finetune or --unlabelled), not --strategy {args.strategy}")
    X, y, about, splitter, folds = _training_data(args)
    if np.ndim(y) == 2 and args.task == "classification" and args.strategy != "finetune":
        raise common.CliError("several label columns (one task each) need --strategy "
                              "finetune: one network with one head per task")
    if args.unlabelled_pool:
        from .folders import list_images

        pool, skipped = list_images([args.unlabelled_pool])
        common.warn_skipped(skipped)
        about += f"; {len(pool)} unlabelled images taught by the teacher alone"
        X = X + [str(p) for p in pool]
        y = np.concatenate([np.asarray(y, dtype=object), np.full(len(pool), None)])
    print(about)
    metric = "R^2" if args.task == "regression" else "accuracy"
    start = time.perf_counter()
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
        estimator, chosen = build_estimator(args, args.strategy), args.strategy
        cv_score = common.fit_scored(estimator, X, y, splitter)
    if args.unlabelled:
        chosen, metric = (f"domain adaptation ({estimator.method})",
                          "accuracy (labelled images)")
    if getattr(estimator, "teacher", None) is not None:
        estimator.set_params(teacher=None)  # predicting does not need it: a small file
    common.save_and_report(estimator, args, chosen, start, cv_score, folds, metric)
    flops = getattr(estimator, "inference_flops_", None)
    if flops:
        teacher = "not counted" if flops["teacher"] is None else \
            f"{flops['teacher'] / 1e9:.3g} GFLOP"
        print(f"inference per image: this model {flops['student'] / 1e9:.3g} GFLOP, the "
              f"teacher {teacher}")
    if getattr(estimator, "temperature_", 1.0) != 1.0:
        print(f"probabilities calibrated on the validation images: temperature "
              f"{estimator.temperature_:.2f}")
    check = getattr(estimator, "adaptation_check_", None)
    if check is not None:
        verdict = "LOOKS HARMFUL" if check.looks_harmful else "no sign of harm"
        print(f"adaptation check ({check.signal} on the unlabelled images): adapted "
              f"{check.adapted:.3f}, source-only {check.source_only:.3f}: {verdict}; "
              f"the two agree on {check.agreement:.0%} of them")
    return common.EXIT_OK
