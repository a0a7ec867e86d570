"""Adapt a classifier to unlabelled images of another kind (domain adaptation).

Source: scikit-learn's handwritten digits, grey on black, labelled. Target: digits
blended into colour photo crops (MNIST-M's recipe), unlabelled during fit; their labels
only score the result. Compares fine-tuning on the source alone with the adapter's
defaults (Deep CORAL + source-matched AdaBN) and with DANN (same backbone,
same budget), prints the guard's check, and plots DANN's domain accuracy per epoch.

Run: python examples/domain_adaptation.py [--quick] [--out FOLDER]
"""

import argparse
from pathlib import Path

import numpy as np

from sktransfer import DomainAdaptationClassifier, FineTuneClassifier
from sktransfer.datasets import load_digits_shift
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
parser.add_argument("--out", default="domain_adaptation_output", help="folder for the plot")
args = parser.parse_args()

# the full run is the benchmark's setting (benchmarks/bench_domain_adaptation.py, seed 0)
n_source, n_target, size, epochs = (120, 120, 32, 2) if args.quick else (400, 898, 48, 15)
X_src, y_src, X_tgt, y_tgt = load_digits_shift(size=size, n_target=n_target, seed=0)
X_src, y_src = X_src[:n_source], y_src[:n_source]
X = np.concatenate([X_src, X_tgt])
y = np.concatenate([y_src, np.full(n_target, -1)])  # -1: the target rows, unlabelled

prep = dict(image_size=size, resize_size=size, mean=LITE_MEAN, std=LITE_STD, random_state=0)
adapted = DomainAdaptationClassifier(efficientnet_lite0(), max_epochs=epochs, **prep)
# source-only fine-tuning with the same training settings (every layer at one rate)
settings = {k: v for k, v in adapted.get_params().items()
            if k in FineTuneClassifier().get_params() and k not in prep and k != "model"}
models = {
    "source only": FineTuneClassifier(efficientnet_lite0(), **prep, **settings).fit(
        X_src, y_src),
    "defaults": adapted.fit(X, y),
    "DANN": DomainAdaptationClassifier(efficientnet_lite0(), method="dann",
                                       max_epochs=epochs, **prep).fit(X, y),
}
for name, model in models.items():
    target = np.mean(model.predict(X_tgt) == y_tgt)
    source = np.mean(model.predict(X_src) == y_src)
    print(f"{name:<12} target accuracy: {target:.3f}  (source: {source:.3f})")
check = adapted.adaptation_check_  # no target label needed
print(f"guard: information maximisation {check.adapted:.3f} adapted vs "
      f"{check.source_only:.3f} source-only; looks harmful: {check.looks_harmful}")

history = models["DANN"].net_.history
print("DANN domain accuracy per epoch:",
      " ".join(f"{v:.2f}" for v in history[:, "domain_acc"]))

import matplotlib  # noqa: E402  (only for the plot)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
epochs_axis = np.arange(1, len(history) + 1)
left.plot(epochs_axis, history[:, "source_loss"], "o-", label="source (classification)")
left.plot(epochs_axis, history[:, "domain_loss"], "s-", label="domain")
left.set(xlabel="epoch", ylabel="loss", title="DANN losses")
left.legend()
right.plot(epochs_axis, history[:, "domain_acc"], "o-", label="domain classifier")
right.axhline(0.5, ls=":", c="grey", label="chance: domains alike")
right.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="DANN domain accuracy")
right.legend()
fig.tight_layout()
fig.savefig(out / "domain_history.png", dpi=100)
print(f"plot: {out / 'domain_history.png'}")
