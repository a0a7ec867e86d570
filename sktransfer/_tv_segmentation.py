"""Former home of torchvision's segmentation models (now ``sktransfer.backbones``).

An alias kept so that segmenters pickled before the move, which name this module's
``GetterBody`` (now in ``sktransfer.backbones._heads``), load.
"""

from ._moved import moved

__getattr__ = moved(__name__)


__all__ = []
