"""Write the fitted models that tests/test_layout.py loads: run with the sktransfer of
the commit named in README.md (``git worktree add /tmp/old <commit>`` and
``PYTHONPATH=/tmp/old python tests/data/previous_version/make_models.py``).

Small models on a tiny CNN are saved whole (joblib) with their outputs on fixed images;
for every model, also one with a torchvision segmentation model (too large to keep), the
classes its pickle names are listed in ``classes.json``.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
import torch
from torch import nn

import sktransfer
from sktransfer import (
    DomainAdaptationClassifier,
    FineTuneClassifier,
    FineTuneRegressor,
    FineTuneSegmenter,
    PretrainedFeatureExtractor,
)

HERE = Path(__file__).parent


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )


def classes(model: object) -> list[list[str]]:
    """The sktransfer classes and functions a pickle of ``model`` names, those of the
    networks that skorch pickles inside it (with its own unpickler) included."""
    from skorch.utils import _TorchLoadUnpickler

    seen: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            seen.add((module, name))
            return super().find_class(module, name)

    inner = _TorchLoadUnpickler.find_class

    def recorded(self, module: str, name: str):
        seen.add((module, name))
        return inner(self, module, name)

    _TorchLoadUnpickler.find_class = recorded
    try:
        Recorder(io.BytesIO(pickle.dumps(model))).load()
    finally:
        _TorchLoadUnpickler.find_class = inner
    return sorted([m, n] for m, n in seen if m.split(".")[0] == "sktransfer")


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    labels = np.array(["a", "b"] * 4)
    common = dict(image_size=16, resize_size=16, max_epochs=2, unfreeze=1, random_state=0,
                  precision="float32")  # the same outputs on CPUs with and without bf16
    models = {
        "extractor": (PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16,
                                                 precision="float32"),
                      labels, "transform"),
        "classifier": (FineTuneClassifier(tiny_cnn(), **common), labels, "predict_proba"),
        "regressor": (FineTuneRegressor(tiny_cnn(), **common), np.linspace(0, 1, 8),
                      "predict"),
        "adaptation": (DomainAdaptationClassifier(tiny_cnn(), **common),
                       np.array(["a", "b", None, None] * 2, dtype=object), "predict_proba"),
        "segmenter": (FineTuneSegmenter(tiny_cnn(), image_size=16, max_epochs=2, unfreeze=1,
                                        random_state=0, precision="float32"),
                      (X[..., 0] > 127).astype(np.int64), "predict_proba"),
    }
    listed = {}
    np.save(HERE / "X.npy", X)
    for name, (model, y, method) in models.items():
        model.fit(X, y)
        joblib.dump(model, HERE / f"{name}.joblib", compress=3)
        out = getattr(model, method)(X)
        np.save(HERE / f"{name}.npy", np.stack(out) if isinstance(out, list) else out)
        listed[name] = {"method": method, "classes": classes(model)}
    seg = FineTuneSegmenter("lraspp_mobilenet_v3_large", weights=None, image_size=32,
                            max_epochs=2, random_state=0)
    seg.fit(rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8),
            np.arange(2 * 32 * 32).reshape(2, 32, 32) % 2)
    listed["segmenter_lraspp"] = {"method": None, "classes": classes(seg)}
    # other configurations whose pickles name other classes (listed, not kept)
    others = {
        "multilabel_validation_recalibrate": (FineTuneClassifier(
            tiny_cnn(), **common, validation_fraction=0.25, batchnorm="recalibrate",
            tta=True), np.eye(2, dtype=int)[[0, 1] * 4]),
        "class_weight": (FineTuneClassifier(tiny_cnn(), **common, class_weight="balanced"),
                         labels),
        "dann_mcc": (DomainAdaptationClassifier(tiny_cnn(), **common, method="dann+mcc"),
                     np.array(["a", "b", None, None] * 2, dtype=object)),
        "coral_mcc": (DomainAdaptationClassifier(tiny_cnn(), **common, method="coral+mcc"),
                      np.array(["a", "b", None, None] * 2, dtype=object)),
        "mcc": (DomainAdaptationClassifier(tiny_cnn(), **common, method="mcc"),
                np.array(["a", "b", None, None] * 2, dtype=object)),
    }
    for name, (model, y) in others.items():
        listed[name] = {"method": None, "classes": classes(model.fit(X, y))}
    (HERE / "classes.json").write_text(json.dumps(listed, indent=1) + "\n")
    print("sktransfer", sktransfer.__version__, "from", sktransfer.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()
