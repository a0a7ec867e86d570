"""Knowing when to trust a fine-tuned classifier: temperature calibration and reject labels.

Two real tasks built offline, one backbone with real ImageNet weights (EfficientNet-Lite0,
shipped in a package), ``FineTuneClassifier`` with its defaults except
``validation_fraction=0.2`` (the held-out split the temperature is fitted on) and
``--unfreeze``:

- ``regions``: ``sktransfer.datasets.load_region_patches`` (12 classes: regions of
  scikit-learn's two sample photos), ``--per-class`` training patches per class (seed 1),
  20 test patches per class (seed 2), 64 px;
- ``digits``: scikit-learn's first 800 digits upscaled to 64 px RGB, split at random:
  ``--n-digits`` for training, the other 500 for testing;
- ``digits-shift``: the same images in their order: the first ``--n-digits`` for
  training, the next 500 (other writers) for testing, which a model fits worse (a
  shift that the validation split, drawn from the training images, does not see).

Calibration: expected calibration error (15 equal-width bins, top label) and log-loss of
the test images with the network's probabilities (temperature 1) and with the fitted
``temperature_`` (``calibration="auto"``, the default), and the accuracy (unchanged by
construction).

Reject labels: the fitted network embeds its training images once; each ``novelty``
score (``mahalanobis``, ``knn``, ``energy``) is fitted on them exactly as ``fit`` does
(:class:`sktransfer._reject.Rejector`, class-conditional), then scores the in-distribution
test images (positives) against novel sets: the other task's images, images of
``load_captioned_shapes``, collages of the sample photos (``load_photo_collage``: the
regions task's own textures, rearranged: near), uniform noise, and the in-distribution
test images corrupted (Gaussian blur of radius 3; heavy JPEG, quality 5). AUROC per pair
and method; at ``keep_rate=0.95`` the share of test images kept and of each novel set
rejected; the accuracy/coverage curve of the default score.

Run: python benchmarks/bench_trust.py [--seeds 0 1 2] [--unfreeze 0 all] [--epochs 10]
Writes benchmarks/results/trust.json and prints tables.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy.special import softmax
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from sktransfer import FineTuneClassifier
from sktransfer._calibration import calibrate, fit_temperature
from sktransfer._reject import NOVELTY_SCORES, Rejector
from sktransfer.datasets import load_captioned_shapes, load_photo_collage, load_region_patches
from sktransfer.metrics import expected_calibration_error
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

SIZE = 64
COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)


def digits(n_train: int, n_test: int = 500, shuffle: bool = True):
    """The first ``n_train + n_test`` digits, split at random (``shuffle``: the test
    images are drawn as the training ones are), or in order (the test images are the
    later ones, written by other people: a shift; accuracy drops by 0.1-0.2)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = (d.images / 16 * 255).astype(np.uint8)
    X = np.stack([np.asarray(Image.fromarray(i).resize((SIZE, SIZE), Image.BILINEAR)
                             .convert("RGB")) for i in imgs[: n_train + n_test]])
    y = d.target[: n_train + n_test]
    if shuffle:
        order = np.random.default_rng(0).permutation(len(y))
        X, y = X[order], y[order]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def regions(per_class: int):
    Xtr, ytr = load_region_patches(per_class, size=SIZE, seed=1)
    Xte, yte = load_region_patches(20, size=SIZE, seed=2)
    return Xtr, ytr, Xte, yte


def blurred(X: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(3)))
                     for x in X])


def jpeg(X: np.ndarray, quality: int = 5) -> np.ndarray:
    out = []
    for x in X:
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def shapes(n: int) -> np.ndarray:
    images = load_captioned_shapes(n, seed=3)[0]
    return np.stack([np.asarray(Image.fromarray(np.asarray(i)).convert("RGB")
                                .resize((SIZE, SIZE))) for i in images])


def novel_sets(task: str, X_test: np.ndarray, other: np.ndarray, rng) -> dict:
    n = 200
    return {
        "other task (far)": other[:n],
        "shapes (far)": shapes(n),
        "noise (far)": rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8),
        "photo collage (near)": load_photo_collage(n, size=SIZE, seed=4)[0],
        "blurred test (corrupted)": blurred(X_test[:n]),
        "jpeg q5 test (corrupted)": jpeg(X_test[:n]),
    }


def ece_nll(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    return (expected_calibration_error(y, proba, labels=classes),
            log_loss(y, proba, labels=classes))


def run(task: str, unfreeze, seed: int, data: dict, args) -> dict:
    Xtr, ytr, Xte, yte = data[task]
    other = data["regions" if task.startswith("digits") else "digits"][2]
    clf = FineTuneClassifier(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                             image_size=SIZE, unfreeze=unfreeze, max_epochs=args.epochs,
                             validation_fraction=0.2, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    T = clf.temperature_
    logits_te, feats_te = embed(clf, Xte)
    raw = softmax(logits_te, axis=1)
    cal = clf.predict_proba(Xte)
    before, after = ece_nll(yte, raw, clf.classes_), ece_nll(yte, cal, clf.classes_)
    acc = accuracy_score(yte, clf.predict(Xte))
    # temperatures fitted on the same validation logits in other ways, on the same test
    encoded = np.searchsorted(clf.classes_, ytr)
    _, valid = clf._split(encoded, seed)
    val_logits = clf._pass(_source(Xtr), valid)[0].numpy()
    strategies = {}
    for name, smoothing in (("nll", 0.0), ("laplace", None)):
        t = fit_temperature(val_logits, encoded[valid], smoothing=smoothing)
        e, n = ece_nll(yte, calibrate(raw, t), clf.classes_)
        strategies[name] = {"temperature": t, "ece": e, "nll": n}
    t = max(1.0, strategies["nll"]["temperature"])
    e, n = ece_nll(yte, calibrate(raw, t), clf.classes_)
    strategies["nll, T >= 1"] = {"temperature": t, "ece": e, "nll": n}
    strategies["validation"] = {"accuracy": float(np.mean(
        val_logits.argmax(1) == encoded[valid])), "n": len(valid)}
    # the scores of reject_label, fitted as fit fits them (on every training image here)
    logits_tr, feats_tr = embed(clf, Xtr)
    ytr_idx = np.searchsorted(clf.classes_, ytr)
    rng = np.random.default_rng(seed)
    novel = novel_sets(task, Xte, other, rng)
    novel_out = {name: embed(clf, X) for name, X in novel.items()}
    correct = clf.classes_[logits_te.argmax(1)] == yte
    methods = {}
    for method in NOVELTY_SCORES:
        rej = Rejector.fit(method, 0.95, feats_tr, logits_tr, ytr_idx)
        s_in = rej.decision(feats_te, logits_te)
        row = {"kept_test": float(np.mean(s_in >= 0)), "auroc": {}, "rejected": {}}
        for name, (lo, fe) in novel_out.items():
            s_out = rej.decision(fe, lo)
            labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
            row["auroc"][name] = float(roc_auc_score(labels, np.r_[s_in, s_out]))
            row["rejected"][name] = float(np.mean(s_out < 0))
        order = np.argsort(-s_in)
        row["accuracy_at_coverage"] = {
            str(c): float(correct[order[: max(1, round(c * len(order)))]].mean())
            for c in COVERAGES}
        methods[method] = row
    return {"task": task, "unfreeze": unfreeze, "seed": seed, "fit_s": fit_s,
            "temperature": T, "accuracy": float(acc), "ece_before": before[0],
            "ece_after": after[0], "nll_before": before[1], "nll_after": after[1],
            "strategies": strategies, "novelty": methods, "precision": clf.precision_}


def embed(clf, X) -> tuple[np.ndarray, np.ndarray]:
    """The fitted network's logits and embeddings of ``X`` (one pass, as fit makes it)."""
    outputs, features = clf._pass(_source(X))
    return outputs.numpy(), features


def _source(X):
    from sktransfer.images import as_image_source

    return as_image_source(X)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--unfreeze", nargs="+", default=["0", "all"])
    parser.add_argument("--tasks", nargs="+", default=["regions", "digits", "digits-shift"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=25)
    parser.add_argument("--n-digits", type=int, default=300)
    parser.add_argument("--output", default="trust.json")
    args = parser.parse_args(argv)
    data = {"regions": regions(args.per_class), "digits": digits(args.n_digits),
            "digits-shift": digits(args.n_digits, shuffle=False)}
    out = Path(__file__).parent / "results" / args.output
    out.parent.mkdir(exist_ok=True)
    rows = []
    for task in args.tasks:
        for unfreeze in args.unfreeze:
            u = unfreeze if unfreeze == "all" else int(unfreeze)
            for seed in args.seeds:
                row = run(task, u, seed, data, args)
                rows.append(row)
                out.write_text(json.dumps(rows, indent=1))  # kept if a later run fails
                print(f"{task:8s} unfreeze={unfreeze:3s} seed={seed} acc={row['accuracy']:.3f} "
                      f"T={row['temperature']:.2f} ECE {row['ece_before']:.3f}->"
                      f"{row['ece_after']:.3f} NLL {row['nll_before']:.3f}->"
                      f"{row['nll_after']:.3f} ({row['fit_s']:.0f}s)", flush=True)
                print("    temperatures: " + "  ".join(
                    f"{k}: T={v['temperature']:.2f} ECE {v['ece']:.3f} NLL {v['nll']:.3f}"
                    for k, v in row["strategies"].items() if "temperature" in v)
                    + f"  (validation accuracy {row['strategies']['validation']['accuracy']:.3f})",
                    flush=True)
                for m, r in row["novelty"].items():
                    print(f"    {m:12s} kept {r['kept_test']:.2f}  " + "  ".join(
                        f"{k.split(' (')[0]}={v:.3f}" for k, v in r["auroc"].items()),
                        flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
