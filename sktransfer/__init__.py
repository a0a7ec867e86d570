"""sktransfer: transfer learning for images as scikit-learn estimators.

Public names load lazily, so ``import sktransfer`` and ``sktransfer --help`` are quick;
PyTorch is imported on first use of an estimator.

``_EXPORTS`` is the list of public names (``__all__`` is made from it); the imports under
``TYPE_CHECKING`` repeat it for type checkers and IDEs, and a test checks that the two
agree and that every name is on the API page.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._adaptation import DomainAdaptationClassifier as DomainAdaptationClassifier
    from ._cost import ComputeCost as ComputeCost
    from ._cost import fit_cost as fit_cost
    from ._extractor import PretrainedFeatureExtractor as PretrainedFeatureExtractor
    from ._finetune import FineTuneClassifier as FineTuneClassifier
    from ._iou import mean_iou_score as mean_iou_score
    from ._iou import mean_iou_scorer as mean_iou_scorer
    from ._lr_finder import LRFindResult as LRFindResult
    from ._novelty import NoveltyDetector as NoveltyDetector
    from ._regressor import FineTuneRegressor as FineTuneRegressor
    from ._segmenter import FineTuneSegmenter as FineTuneSegmenter
    from ._unlabelled import information_maximization_scorer as information_maximization_scorer
    from ._unlabelled import prediction_entropy_scorer as prediction_entropy_scorer
    from ._zero_shot import ZeroShotClassifier as ZeroShotClassifier
    from .backbones import Backbone as Backbone
    from .backbones import load_backbone as load_backbone
    from .deploy import OnnxModel as OnnxModel
    from .deploy import export_onnx as export_onnx
    from .deploy import read_onnx_metadata as read_onnx_metadata
    from .errors import ImageInputError as ImageInputError
    from .errors import WeightsUnavailableError as WeightsUnavailableError
    from .exchange import export_model as export_model
    from .exchange import import_model as import_model


# Public name -> the module that defines it, loaded on first use. The TYPE_CHECKING block
# above says the same for type checkers; tests/test_layout.py checks that the two agree.
_EXPORTS = {
    "Backbone": "backbones",
    "ComputeCost": "_cost",
    "DomainAdaptationClassifier": "_adaptation",
    "FineTuneClassifier": "_finetune",
    "FineTuneRegressor": "_regressor",
    "FineTuneSegmenter": "_segmenter",
    "ImageInputError": "errors",
    "LRFindResult": "_lr_finder",
    "NoveltyDetector": "_novelty",
    "OnnxModel": "deploy",
    "PretrainedFeatureExtractor": "_extractor",
    "WeightsUnavailableError": "errors",
    "ZeroShotClassifier": "_zero_shot",
    "export_model": "exchange",
    "export_onnx": "deploy",
    "fit_cost": "_cost",
    "import_model": "exchange",
    "information_maximization_scorer": "_unlabelled",
    "load_backbone": "backbones",
    "mean_iou_score": "_iou",
    "mean_iou_scorer": "_iou",
    "prediction_entropy_scorer": "_unlabelled",
    "read_onnx_metadata": "deploy",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
