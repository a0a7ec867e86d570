"""Domain adaptation across shift families: what works with no settings, what each method
and BatchNorm variant adds, and whether an unsupervised signal can tell.

Families (all offline, from images that ship with scikit-learn):

- ``digits``: scikit-learn's digits (source: grey on black) -> digits blended into colour
  photo crops (target), as MNIST -> MNIST-M (:func:`sktransfer.datasets.load_digits_shift`);
  ``--digits-n`` labelled source images;
- ``noise``, ``contrast``, ``sketch``, ``illumination``, ... : clean photo patches (12
  classes) -> the same kind of patches altered by one shift
  (:func:`sktransfer.datasets.load_photo_shift`, severity ``--severity``);
- ``partial`` (a case built to hurt, not one of the families): clean patches on both
  sides, but the target holds only 3 of the 12 classes (partial domain adaptation):
  aligning the domains' statistics then moves images towards classes the target lacks.

Protocol: per family and seed, the labelled source, an unlabelled target half given to
``fit``, and a held-out target half that scores (labels never seen by any method). Same
backbone for all (EfficientNet-Lite0 with its ImageNet weights, shipped in a package),
``--size`` pixels. Each fine-tuning fit is scored as trained and, post hoc, with AdaBN
(Li et al. 2016: every BatchNorm layer's statistics recomputed on the unlabelled target
half; ``+adabn`` rows). For every fit the unsupervised signals of
:mod:`sktransfer._signals` are computed on the unlabelled target half (what a user has).

Configs (``--configs``):

- ``frozen``: frozen features + LogisticRegression;
- ``source``: ``FineTuneClassifier`` on the source alone, with the training settings of
  ``DomainAdaptationClassifier``'s defaults (or of ``--set``);
- ``default``: ``DomainAdaptationClassifier()`` with no setting but the backbone's (and
  ``random_state``): what a user gets;
- ``dann``, ``coral``, ``mcc``, ``dann+mcc``, ``coral+mcc``: that ``method``, other
  parameters at their defaults unless ``--set`` changes them; ``<method>@bn=<mode>``
  sets ``batchnorm`` too, ``<method>@w=<weight>`` the adaptation weight.

Run: python benchmarks/bench_adaptation_study.py [--families ...] [--seeds 0 1 2]
     [--configs ...] [--set max_epochs=15 ...] [--output NAME.json]
Writes benchmarks/results/NAME.json (default adaptation_study.json) and prints per family
the mean target accuracy of each config and its gap to ``source``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

FAMILIES = ["digits", "noise", "contrast", "sketch", "illumination"]
#: ``partial``: a case built to hurt, outside the families (see the docstring)
PARTIAL_CLASSES = [0, 1, 2]
CONFIGS = ["frozen", "source", "default", "dann", "coral", "mcc", "dann+mcc"]


def lite0():
    from sktransfer.zoo import efficientnet_lite0

    return efficientnet_lite0()


def task(family: str, seed: int, args):
    """(X_source, y_source, X_target_fit, X_target_score, y_target_fit, y_target_score)."""
    import numpy as np

    from sktransfer.datasets import load_digits_shift, load_photo_shift, load_region_patches

    if family == "digits":
        Xs, ys, Xt, yt = load_digits_shift(size=args.size, seed=seed)
        Xs, ys = Xs[:args.digits_n], ys[:args.digits_n]
    elif family == "partial":  # no change of style; the target holds 3 of the 12 classes
        streams = np.random.SeedSequence(seed).spawn(2)
        Xs, ys = load_region_patches(args.photo_n, size=args.size,
                                     seed=int(streams[0].generate_state(1)[0]))
        Xt, yt = load_region_patches(args.photo_target * 4, size=args.size,
                                     seed=int(streams[1].generate_state(1)[0]))
        keep = np.isin(yt, PARTIAL_CLASSES)
        Xt, yt = Xt[keep], yt[keep]
    else:
        Xs, ys, Xt, yt = load_photo_shift(family, severity=args.severity,
                                          n_per_region=args.photo_n,
                                          n_target_per_region=args.photo_target,
                                          size=args.size, seed=seed)
    order = np.random.default_rng(seed).permutation(len(Xt))
    half = args.target_fit if family == "digits" else len(Xt) // 2
    fit, score = order[:half], order[half:]
    return Xs, ys, Xt[fit], Xt[score], yt[fit], yt[score]


def estimator(config: str, args, seed: int):
    """The estimator of ``config`` (None for the frozen-features pipeline)."""
    from sktransfer import DomainAdaptationClassifier, FineTuneClassifier
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    base = dict(image_size=args.size, resize_size=args.size, mean=LITE_MEAN, std=LITE_STD,
                random_state=seed)
    settings = dict(s.split("=", 1) for s in args.set)
    settings = {k: _value(v) for k, v in settings.items()}
    if config == "default":
        return DomainAdaptationClassifier(lite0(), **base)
    defaults = DomainAdaptationClassifier().get_params()
    shared = set(FineTuneClassifier().get_params())
    training = {k: settings.get(k, v) for k, v in defaults.items()
                if k in shared and k not in base and k != "model"}
    if config == "source":
        return FineTuneClassifier(lite0(), **base, **training)
    method, *mods = config.split("@")
    extra = {k: v for k, v in settings.items() if k not in shared}
    for mod in mods:
        key, value = mod.split("=", 1)
        extra[{"bn": "batchnorm", "w": "adaptation_weight"}.get(key, key)] = _value(value)
    # AdaBN is scored post hoc (the +adabn rows), from the same fit
    params = {**training, **extra, "method": method, "adabn": False, "guard": False}
    return DomainAdaptationClassifier(lite0(), **base, **params)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def signals(proba) -> dict:
    from sktransfer._signals import SIGNALS

    return {name: round(fn(proba), 5) for name, fn in SIGNALS.items()}


def run(config: str, data, args, seed: int) -> list[dict]:
    import numpy as np
    from _paths import path_of
    from sklearn.linear_model import LogisticRegression

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer._adaptation import with_target_statistics
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    Xs, ys, Xf, Xv, yf, yv = data
    start = time.perf_counter()
    if config == "frozen":
        ext = PretrainedFeatureExtractor(lite0(), image_size=args.size, resize_size=args.size,
                                         mean=LITE_MEAN, std=LITE_STD)
        clf = LogisticRegression(max_iter=3000).fit(ext.fit_transform(Xs), ys)
        ff, fv = ext.transform(Xf), ext.transform(Xv)
        return [{"config": config, "target_acc": float(np.mean(clf.predict(fv) == yv)),
                 "target_fit_acc": float(np.mean(clf.predict(ff) == yf)),
                 "signals": signals(clf.predict_proba(ff)),
                 "fit_s": time.perf_counter() - start,
                 "path": path_of(ext.transform_cost_)}]
    est = estimator(config, args, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config == "source":
            est.fit(Xs, ys)
        else:
            est.fit(Xs, ys, X_target=Xf)
    fit_s = time.perf_counter() - start
    rows = []
    variants = [("", est)]
    if config != "default":
        variants.append(("+adabn", with_target_statistics(est, Xf)))
        variants.append(("+madabn", with_target_statistics(est, Xf, Xs)))
    for suffix, model in variants:
        row = {"config": config + suffix,
               "target_acc": float(np.mean(model.predict(Xv) == yv)),
               "target_fit_acc": float(np.mean(model.predict(Xf) == yf)),
               "source_acc": float(np.mean(model.predict(Xs) == ys)),
               "signals": signals(model.predict_proba(Xf)),
               "fit_s": fit_s, "path": path_of(est.fit_cost_)}
        history = est.net_.history
        if "domain_acc" in history[-1]:
            row["domain_acc_last"] = round(float(history[-1]["domain_acc"]), 3)
        if hasattr(est, "adaptation_check_") and est.adaptation_check_ is not None:
            row["check"] = est.adaptation_check_._asdict()
        rows.append(row)
    return rows


def summarise(runs: list[dict]) -> dict:
    import numpy as np

    out = {}
    for family in dict.fromkeys(r["family"] for r in runs):
        rows = [r for r in runs if r["family"] == family]
        base = {r["seed"]: r["target_acc"] for r in rows if r["config"] == "source"}
        table = {}
        for config in dict.fromkeys(r["config"] for r in rows):
            accs = {r["seed"]: r["target_acc"] for r in rows if r["config"] == config}
            gaps = [accs[s] - base[s] for s in accs if s in base]
            table[config] = {"mean": float(np.mean(list(accs.values()))),
                             "per_seed": [round(accs[s], 4) for s in sorted(accs)],
                             "gap_mean": float(np.mean(gaps)) if gaps else None,
                             "gap_min": float(np.min(gaps)) if gaps else None}
        out[family] = table
    return out


def signal_quality(runs: list[dict]) -> dict:
    """How well each unsupervised signal tracks the target accuracy.

    ``spearman``: per family and seed, the rank correlation between the signal and the
    held-out target accuracy across the fine-tuned settings, averaged. ``sign``: over
    every setting and family-seed, how often ``signal(setting) < signal(source)`` says
    right whether the setting's accuracy is below the source-only one's (``harm_recall``:
    the share of settings that lost more than 2 points that the signal flags).
    ``picked_gain``: the gain over source-only fine-tuning of the setting with the best
    signal, per family and seed (mean and worst): selection by the signal alone.
    """
    import numpy as np
    from scipy.stats import spearmanr

    names = list(runs[0]["signals"])
    out = {}
    for name in names:
        rhos, signs, flags, picked = [], [], [], []
        for key in dict.fromkeys((r["family"], r["seed"]) for r in runs):
            rows = [r for r in runs if (r["family"], r["seed"]) == key
                    and r["config"] != "frozen"]
            base = [r for r in rows if r["config"] == "source"]
            if len(rows) < 3 or not base:
                continue
            acc = [r["target_acc"] for r in rows]
            sig = [r["signals"][name] for r in rows]
            rhos.append(spearmanr(sig, acc).statistic)
            # what selecting by the signal alone (GridSearchCV with it) would have given
            picked.append(acc[int(np.argmax(sig))] - base[0]["target_acc"])
            for r in rows:
                if r["config"] == "source":
                    continue
                lower = r["signals"][name] < base[0]["signals"][name]
                delta = r["target_acc"] - base[0]["target_acc"]
                if abs(delta) > 0.02:
                    signs.append(lower == (delta < 0))
                if delta < -0.02:
                    flags.append(lower)
        out[name] = {"spearman": float(np.nanmean(rhos)) if rhos else None,
                     "sign": float(np.mean(signs)) if signs else None,
                     "harm_recall": float(np.mean(flags)) if flags else None,
                     "n_harmful": len(flags),
                     "picked_gain_mean": float(np.mean(picked)) if picked else None,
                     "picked_gain_min": float(np.min(picked)) if picked else None}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--set", nargs="*", default=[],
                        help="training settings for every config but 'default' (k=v)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--photo-n", type=int, default=15, help="source patches per class")
    parser.add_argument("--photo-target", type=int, default=30,
                        help="target patches per class (half fit, half score)")
    parser.add_argument("--digits-n", type=int, default=500)
    parser.add_argument("--target-fit", type=int, default=400,
                        help="digits: unlabelled target images given to fit")
    parser.add_argument("--output", default="adaptation_study.json")
    args = parser.parse_args(argv)
    import torch

    path = ROOT / "benchmarks" / "results" / args.output
    path.parent.mkdir(exist_ok=True)
    runs = []
    for family in args.families:
        for seed in args.seeds:
            data = task(family, seed, args)
            for config in args.configs:
                for row in run(config, data, args, seed):
                    row.update(family=family, seed=seed)
                    runs.append(row)
                    print(json.dumps(row), flush=True)
            out = {"args": vars(args), "threads": torch.get_num_threads(),
                   "summary": summarise(runs), "signals": signal_quality(runs),
                   "runs": runs}
            path.write_text(json.dumps(out, indent=1))
    for family, table in out["summary"].items():
        print(f"\n{family}")
        for config, s in table.items():
            gap = "" if s["gap_mean"] is None else (f"{s['gap_mean']:+.3f} "
                                                     f"(worst {s['gap_min']:+.3f})")
            print(f"  {config:<24} {s['mean']:.3f}  {s['per_seed']}  {gap}")
    print("\nsignals (rank correlation with target accuracy; sign vs source-only):")
    for name, q in out["signals"].items():
        print(f"  {name:<8} {q}")
    return out


if __name__ == "__main__":
    main()
