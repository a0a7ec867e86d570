"""sktransfer: transfer learning for images as scikit-learn estimators."""

from .backbones import Backbone, WeightsUnavailableError, load_backbone
from .extractor import PretrainedFeatureExtractor
from .finetune import FineTuneClassifier
from .images import ImageInputError

__all__ = [
    "Backbone",
    "FineTuneClassifier",
    "ImageInputError",
    "PretrainedFeatureExtractor",
    "WeightsUnavailableError",
    "load_backbone",
]
__version__ = "0.1.0"
