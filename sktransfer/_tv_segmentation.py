"""Former home of torchvision's segmentation models, now ``sktransfer.backbones._tv_segmentation``.

An alias kept so that segmenters pickled before the move, which name this module, load.
"""

from ._moved import moved

__getattr__ = moved(__name__)


__all__ = []
