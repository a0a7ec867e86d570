"""Zero-shot and few-shot classification from class names, with a vision-language model.

ZeroShotClassifier turns class names into text embeddings ("a red circle.") and labels each
image with the closest one: no labelled image needed. With a few labelled images per class
it trains a linear probe held to those text embeddings. Here a tiny CLIP trained on
captioned shapes (the one the tests ship) stands in for a real model; pass --model
open_clip:ViT-B-32/laion2b_s34b_b79k with your own images for the real thing.

Run: python examples/zero_shot.py [--quick] [--model SPEC]
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from sktransfer import ZeroShotClassifier
from sktransfer.datasets import held_out_combos, load_captioned_shapes

TINY_CLIP = Path(__file__).parents[1] / "tests" / "data" / "tiny_clip"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer test images")
parser.add_argument("--model", default=f"open_clip:local-dir:{TINY_CLIP}")
args = parser.parse_args()

seen, unseen = held_out_combos()  # colour-shape pairs the tiny CLIP never saw in training
classes = [f"{colour} {shape}" for colour, shape in seen + unseen]
X_test, _, test = load_captioned_shapes(200 if args.quick else 1000, seed=1234)
y_test = test["combo"]

# Zero-shot: the class names are all it needs.
clf = ZeroShotClassifier(args.model, classes=classes, templates=["a {}.", "a photo of a {}."])
clf.fit()
print(f"zero-shot accuracy: {clf.score(X_test, y_test):.3f} ({len(classes)} classes)")

# Few-shot: k labelled images per class; and a plain linear probe on the same embeddings.
E_test = clf.transform(X_test)
for k in (1, 2, 4):
    X_shots, _, shots = load_captioned_shapes(k * len(classes), seed=7,
                               combos=[pair for pair in seen + unseen for _ in range(k)])
    few = clf.fit(X_shots, shots["combo"]).score(X_test, y_test)
    probe = LogisticRegression(max_iter=2000).fit(clf.transform(X_shots), shots["combo"])
    print(f"{k}-shot accuracy: {few:.3f} (linear probe alone: "
          f"{probe.score(E_test, y_test):.3f})")
on_unseen = np.isin(y_test, classes[len(seen):])
accuracy = np.mean(clf.predict(X_test[on_unseen]) == y_test[on_unseen])
print(f"{len(unseen)} pairs never seen in training ({', '.join(classes[len(seen):])}): "
      f"{k}-shot accuracy on them {accuracy:.3f}")
