"""Frozen pretrained features + LogisticRegression, in one scikit-learn Pipeline.

The "little data, similar domain" strategy: an ImageNet network, frozen, turns each
image into an embedding; a linear model learns the classes on top.

Run: python examples/pipeline_logistic.py [--save model.joblib] [--quick]
"""

import argparse

import joblib
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--save", help="write the fitted pipeline to this joblib file")
parser.add_argument("--quick", action="store_true", help="fewer test images")
args = parser.parse_args()

# 12 classes, 5 labelled 64x64 patches each (uint8 arrays; paths or PIL images work too).
X_train, y_train = load_region_patches(5, seed=0)
X_test, y_test = load_region_patches(5 if args.quick else 20, seed=1)

pipe = make_pipeline(
    # ImageNet EfficientNet-Lite0, shipped in a PyPI package: works offline.
    # With internet (or a filled torch hub cache), "resnet50" etc. work the same way.
    PretrainedFeatureExtractor(efficientnet_lite0(), image_size=64, mean=LITE_MEAN,
                               std=LITE_STD),
    LogisticRegression(max_iter=3000),
)
pipe.fit(X_train, y_train)
print(f"test accuracy: {pipe.score(X_test, y_test):.3f} (chance: {1 / 12:.3f})")

if args.save:
    joblib.dump(pipe, args.save)  # carries the network's weights
    print(f"saved to {args.save}")
