"""Former module paths of classes, kept so that models pickled by earlier versions still load.

A pickle names the module of each class it holds. sktransfer 0.1 defined the estimators
in ``sktransfer.extractor``, ``sktransfer.finetune`` and ``sktransfer.regressor``, now
private (``sktransfer._extractor``...); later moves took the networks' parts into the
``sktransfer.backbones`` package and the losses into ``sktransfer._losses``. Each former
module serves its moved classes through :func:`moved` (a module ``__getattr__``), with a
DeprecationWarning (shown to developers and test suites, not to the users of an app that
loads an old model file). :data:`MOVED` lists every move; a test loads each.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

# former module -> {class name: module that defines it now}
MOVED: dict[str, dict[str, str]] = {
    "sktransfer.extractor": {"PretrainedFeatureExtractor": "sktransfer._extractor"},
    "sktransfer.finetune": {"FineTuneClassifier": "sktransfer._finetune"},
    "sktransfer.regressor": {"FineTuneRegressor": "sktransfer._regressor"},
    "sktransfer.backbones": {"PooledBody": "sktransfer.backbones._heads"},
    "sktransfer._tv_segmentation": {"GetterBody": "sktransfer.backbones._heads"},
    "sktransfer._training": {"WeightedLoss": "sktransfer._losses"},
    "sktransfer._segmenter": {"PixelLoss": "sktransfer._losses"},
}


def moved(old: str) -> Callable[[str], object]:
    """A module ``__getattr__`` for the former module ``old`` serving its moved classes."""
    names = MOVED[old]

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        public = importlib.import_module("sktransfer").__all__
        where = "'sktransfer'" if name in public else names[name]
        warnings.warn(f"{old}.{name} moved: import it from {where} (models saved by an "
                      "earlier sktransfer load as before; saving them again drops this "
                      "warning)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
