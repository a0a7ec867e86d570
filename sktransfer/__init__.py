"""sktransfer: transfer learning for images as scikit-learn estimators.

Public names load lazily, so ``import sktransfer`` and ``sktransfer --help`` are quick;
PyTorch is imported on first use of an estimator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Backbone": "backbones",
    "ComputeCost": "_cost",
    "WeightsUnavailableError": "errors",
    "load_backbone": "backbones",
    "PretrainedFeatureExtractor": "_extractor",
    "DomainAdaptationClassifier": "_adaptation",
    "FineTuneClassifier": "_finetune",
    "FineTuneRegressor": "_regressor",
    "FineTuneSegmenter": "_segmenter",
    "LRFindResult": "_lr_finder",
    "ImageInputError": "errors",
    "export_model": "exchange",
    "import_model": "exchange",
    "fit_cost": "_cost",
    "mean_iou_score": "_iou",
    "mean_iou_scorer": "_iou",
    "prediction_entropy_scorer": "_unlabelled",
    "information_maximization_scorer": "_unlabelled",
}
__all__ = [
    "Backbone",
    "ComputeCost",
    "DomainAdaptationClassifier",
    "FineTuneClassifier",
    "FineTuneRegressor",
    "FineTuneSegmenter",
    "ImageInputError",
    "LRFindResult",
    "PretrainedFeatureExtractor",
    "WeightsUnavailableError",
    "export_model",
    "fit_cost",
    "import_model",
    "information_maximization_scorer",
    "load_backbone",
    "mean_iou_score",
    "mean_iou_scorer",
    "prediction_entropy_scorer",
]

if TYPE_CHECKING:
    from ._adaptation import DomainAdaptationClassifier
    from ._cost import ComputeCost, fit_cost
    from ._extractor import PretrainedFeatureExtractor
    from ._finetune import FineTuneClassifier
    from ._iou import mean_iou_score, mean_iou_scorer
    from ._lr_finder import LRFindResult
    from ._regressor import FineTuneRegressor
    from ._segmenter import FineTuneSegmenter
    from ._unlabelled import information_maximization_scorer, prediction_entropy_scorer
    from .backbones import Backbone, load_backbone
    from .errors import ImageInputError, WeightsUnavailableError
    from .exchange import export_model, import_model


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
