"""Any backbone spec -> one :class:`Backbone`: feature body, output size, layer groups,
preprocessing.

A spec is a torchvision classification model name, a timm model (``"timm:..."``,
``"hf-hub:..."``), one of torchvision's segmentation models (for the segmenter), or any
:class:`torch.nn.Module`. Each source is one provider module behind
:func:`load_backbone`, and nothing outside this package knows a provider's names:

- ``_load``: :func:`load_backbone`, which asks the providers in turn and finishes;
- providers: ``_torchvision``, ``_timm``, ``_tv_segmentation``, ``_module``;
- ``_weights`` (weights files and their identity), ``_heads`` (head removal, pooling),
  ``_groups`` (layer groups), ``_preprocessing``, ``_memo`` (loaded networks kept for
  reuse), ``_backbone`` (the :class:`Backbone` and ``Built`` records).

Public: the names in ``__all__``.
"""

from .._moved import moved
from . import _torchvision
from ._backbone import Backbone
from ._load import load_backbone
from ._weights import load_state_dict_file

#: The backbone of every estimator when ``model`` is not given: torchvision's EfficientNet-B0.
DEFAULT_MODEL: str = _torchvision.DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "Backbone", "load_backbone", "load_state_dict_file"]

# classes that models pickled by earlier versions name at their former path here
__getattr__ = moved(__name__)
