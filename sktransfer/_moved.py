"""Former module paths of classes, kept so that models pickled by earlier versions still load.

A pickle names the module of each class it holds. sktransfer 0.1 defined the estimators
in ``sktransfer.extractor``, ``sktransfer.finetune`` and ``sktransfer.regressor``, now
private (``sktransfer._extractor``...); later moves took the networks' parts into the
``sktransfer.backbones`` package and the losses into ``sktransfer._losses``. Each former
module serves its moved names through :func:`moved` (a module ``__getattr__``), with a
DeprecationWarning (shown to developers and test suites, not to the users of an app that
loads an old model file). :data:`MOVED` lists every move; a test loads each.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

# former module -> {name: module that defines it now}; the classes that pickles name, and
# the helpers that sktransfer.backbones held before it was a package (private now)
MOVED: dict[str, dict[str, str]] = {
    "sktransfer.extractor": {"PretrainedFeatureExtractor": "sktransfer._extractor"},
    "sktransfer.finetune": {"FineTuneClassifier": "sktransfer._finetune"},
    "sktransfer.regressor": {"FineTuneRegressor": "sktransfer._regressor"},
    "sktransfer.backbones": {
        **dict.fromkeys(["PooledBody", "pool_features", "strip_head", "HEAD_NAMES"],
                        "sktransfer.backbones._heads"),
        **dict.fromkeys(["default_groups", "parse_groups", "check_groups"],
                        "sktransfer.backbones._groups"),
        "make_preprocessing": "sktransfer.backbones._preprocessing",
        "list_torchvision_models": "sktransfer.backbones._torchvision",
    },
    "sktransfer._tv_segmentation": {"GetterBody": "sktransfer.backbones._heads"},
    "sktransfer._training": {"WeightedLoss": "sktransfer._losses"},
    "sktransfer._segmenter": {"PixelLoss": "sktransfer._losses"},
}


def moved(old: str) -> Callable[[str], object]:
    """A module ``__getattr__`` for the former module ``old`` serving its moved names."""
    names = MOVED[old]

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        if name in importlib.import_module("sktransfer").__all__:
            advice = "import it from 'sktransfer'"
        else:
            advice = f"it is internal now ({names[name]}) and may change without notice"
        warnings.warn(f"{old}.{name} moved: {advice} (models saved by an earlier "
                      "sktransfer load as before; saving them again drops this warning)",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
