"""The one entry point, :func:`load_backbone`: picks the provider that takes a spec, then
finishes every backbone the same way (layer groups, preprocessing, pooled body, feature
size). Knows no provider's names: each provider module says which specs it takes."""

from __future__ import annotations

import os
from types import ModuleType

from torch import nn
from torchvision.models import WeightsEnum

from .._meta import output_shape
from . import _module, _open_clip, _timm, _torchvision, _tv_segmentation
from ._backbone import Backbone
from ._groups import check_groups, default_groups, parse_groups
from ._heads import GetterBody, PooledBody
from ._preprocessing import make_preprocessing
from ._torchvision import DEFAULT_MODEL

# Asked in order; the first whose ``accepts(spec)`` is true builds the network. Each has
# ``accepts``, ``build`` (returning a ``Built``) and ``SEGMENTATION`` (whether its
# networks are segmentation models, with a decoder). The torchvision classification
# provider takes any other string (and says when the name is unknown), so it comes last.
PROVIDERS = (_module, _timm, _open_clip, _tv_segmentation, _torchvision)


def provider_of(model: object) -> ModuleType:
    """The provider module that builds ``model``."""
    for provider in PROVIDERS:
        if provider.accepts(model):
            return provider
    raise TypeError(
        f"model must be a torchvision model name or an nn.Module, got {type(model).__name__}"
    )


def load_backbone(
    model: str | nn.Module = DEFAULT_MODEL,
    weights: str | os.PathLike | WeightsEnum | None = "DEFAULT",
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: tuple | None = None,
    std: tuple | None = None,
    groups: list | dict | None = None,
    progress: bool = False,
    share_weights: bool = False,
    segmentation: bool = False,
) -> Backbone:
    """Build a :class:`Backbone` from a spec.

    Parameters
    ----------
    model : str or nn.Module, default="efficientnet_b0"
        A torchvision classification model name (optionally ``"torchvision:<name>"``), a
        timm model ``"timm:<name>[.<pretrained tag>]"`` or ``"hf-hub:<org>/<repo>"`` (needs
        ``pip install 'sktransfer[timm]'``), or a module (deep-copied, never modified).
        With ``segmentation=True``, also one of torchvision's segmentation models
        (``"fcn_resnet50"``, ``"deeplabv3_mobilenet_v3_large"``...).
    weights : str, path, WeightsEnum or None, default="DEFAULT"
        For a name: a weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``...), ``None`` for random
        initialisation, or a local weights file. For a timm model: ``"DEFAULT"`` (timm's
        pretrained weights, through the Hugging Face cache), ``None``, or a local
        ``.safetensors``/``.pth`` file. For a module: ``"DEFAULT"``/``None`` keep its
        weights, a path loads a state dict into it.
    image_size, resize_size, mean, std : optional
        Override the crop size, resize size and normalisation of the weights.
    groups : list or dict, optional
        Layer groups (stem first), each a submodule name or list of names; a dict maps group
        names to them. Default: the architecture's natural stages.
    progress : bool, default=False
        Show a download progress bar.
    share_weights : bool, default=False
        For callers that never change the weights (a frozen feature extractor): pretrained
        weights the process already loaded are shared with its memo rather than copied
        (a fit in a cross-validation then costs milliseconds instead of a copy of the
        network). Moving the network to another device or memory format is fine; changing
        its tensors in place is not.
    segmentation : bool, default=False
        Accept torchvision's segmentation models: their backbone keeps the pretrained
        decoder (``Backbone.decoder``) and its ``body`` returns a dict of feature maps.
        Without it, such a name is an error pointing to
        :class:`~sktransfer.FineTuneSegmenter`. Other specs load the same either way.

    Returns
    -------
    Backbone
        The network without its head, its feature size, layer groups and preprocessing.
    """
    provider = provider_of(model)
    if provider.SEGMENTATION and not segmentation:
        raise ValueError(
            f"{model!r} is a segmentation model: fine-tune it with FineTuneSegmenter (on the "
            "command line: sktransfer fit --task segmentation), or load it with "
            "load_backbone(..., segmentation=True) to get its decoder too")
    built = provider.build(model, weights, image_size=image_size, progress=progress,
                           share_weights=share_weights)
    net = built.net
    if groups is None:
        layer_groups = built.groups or default_groups(net)
    else:
        layer_groups = parse_groups(groups)
    check_groups(net, layer_groups)
    preprocessing = make_preprocessing(built.preprocessing, image_size, resize_size, mean, std)
    if built.decoder is not None:
        return Backbone(GetterBody(net), 0, layer_groups, preprocessing, built.name,
                        built.weights_id, decoder=built.decoder)
    body = PooledBody(net)
    size = preprocessing.crop_size
    num_features = output_shape(body, (1, 3, size, size))[1]  # shapes only, no arithmetic
    return Backbone(body, int(num_features), layer_groups, preprocessing, built.name,
                    built.weights_id, text=built.text)
