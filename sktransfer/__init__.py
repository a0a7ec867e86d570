"""sktransfer: transfer learning for images as scikit-learn estimators.

Public names load lazily, so ``import sktransfer`` and ``sktransfer --help`` are quick;
PyTorch is imported on first use of an estimator.

The imports under ``TYPE_CHECKING`` below are the one list of the public names: type
checkers and IDEs read them as they are, and at run time they are parsed, not executed,
into the table of lazily loaded names and ``__all__``. A new public name is one line there
(and an entry on the API page, which a test checks).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
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
    from ._regressor import FineTuneRegressor as FineTuneRegressor
    from ._segmenter import FineTuneSegmenter as FineTuneSegmenter
    from ._unlabelled import information_maximization_scorer as information_maximization_scorer
    from ._unlabelled import prediction_entropy_scorer as prediction_entropy_scorer
    from .backbones import Backbone as Backbone
    from .backbones import load_backbone as load_backbone
    from .errors import ImageInputError as ImageInputError
    from .errors import WeightsUnavailableError as WeightsUnavailableError
    from .exchange import export_model as export_model
    from .exchange import import_model as import_model


def _exports() -> dict[str, str]:
    """``{public name: module}`` from the ``TYPE_CHECKING`` imports of this file."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
