"""Another app: load a saved sktransfer model with joblib and classify image files.

The model file carries the network's weights; this app needs no internet and no GPU, only
sktransfer installed (and, for models built on your own nn.Module class, that class).
Load only model files you trust: joblib/pickle files run code when loaded.

Run: python examples/predict_app.py model.joblib image1.jpg [image2.png ...]
"""

import argparse

import joblib

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", help="a model saved with joblib.dump or 'sktransfer fit'")
parser.add_argument("images", nargs="+", help="image files")
args = parser.parse_args()

model = joblib.load(args.model)
proba = model.predict_proba(args.images)  # paths go straight in
for path, row in zip(args.images, proba, strict=True):
    best = row.argmax()
    print(f"{path}: {model.classes_[best]} (p={row[best]:.2f})")
