"""Few-shot classification: nearest class centroid in a pretrained embedding space.

With 1, 2 or 5 labelled images per class, averaging embeddings per class and assigning
each new image to the closest average is a strong, training-free baseline.

Run: python examples/few_shot_nearest_centroid.py [--quick]
"""

import argparse

import numpy as np
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from sktransfer import PretrainedFeatureExtractor
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer test images")
args = parser.parse_args()

X_pool, y_pool = load_region_patches(5, seed=0)
X_test, y_test = load_region_patches(5 if args.quick else 20, seed=1)

# Embed once, reuse for every shot count: the extractor is a plain transformer.
extractor = PretrainedFeatureExtractor(efficientnet_lite0(), image_size=64, mean=LITE_MEAN,
                                       std=LITE_STD).fit()
E_pool, E_test = extractor.transform(X_pool), extractor.transform(X_test)

for shots in (1, 2, 5):
    idx = np.concatenate([np.flatnonzero(y_pool == c)[:shots] for c in np.unique(y_pool)])
    # L2-normalised embeddings: nearest centroid by cosine similarity.
    model = make_pipeline(Normalizer(), NearestCentroid()).fit(E_pool[idx], y_pool[idx])
    print(f"{shots}-shot accuracy: {model.score(E_test, y_test):.3f} (chance {1 / 12:.3f})")
