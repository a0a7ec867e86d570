"""torchvision's ImageNet classification models as a backbone spec: ``"resnet50"``, also
written ``"torchvision:resnet50"``; the only module that knows torchvision's names and its
weights API (:mod:`._tv_segmentation` reuses the weights API for segmentation models).

``weights``: ``"DEFAULT"``, a weights name such as ``"IMAGENET1K_V2"`` (loaded through
torchvision's weights API and the torch hub cache), ``None`` for random initialisation,
or a path to a local weights file.
"""

from __future__ import annotations

import difflib
import os
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from ..errors import WeightsUnavailableError
from . import _memo
from ._backbone import Built
from ._heads import strip_head
from ._weights import file_id, load_into, looks_like_path

DEFAULT_MODEL = "efficientnet_b0"
SEGMENTATION = False
PREFIX = "torchvision:"


def accepts(spec: object) -> bool:
    """Whether ``spec`` is for this provider: any other string (a name is checked when
    the network is built, with suggestions)."""
    return isinstance(spec, str)


def list_torchvision_models() -> list[str]:
    """Names of torchvision's ImageNet classification models."""
    return tvm.list_models(module=tvm)


def _check_model_name(name: str) -> None:
    names = list_torchvision_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown torchvision model {name!r}.{hint} Pass one of "
            "torchvision.models.list_models(module=torchvision.models), or an nn.Module."
        )


def resolve_enum(name: str, weights: str | WeightsEnum) -> WeightsEnum:
    """The weights enum member ``weights`` names for model ``name``."""
    enum_cls = tvm.get_model_weights(name)
    if isinstance(weights, WeightsEnum):
        return weights
    key = weights.split(".")[-1]
    try:
        return enum_cls[key]
    except KeyError:
        valid = ["DEFAULT", *enum_cls.__members__]
        raise ValueError(
            f"Unknown weights {weights!r} for {name!r}; valid names are {valid}, None, or a "
            "path to a local weights file"
        ) from None


def cached_file(enum: WeightsEnum) -> Path:
    """Where the torch hub cache keeps the file of ``enum``."""
    filename = os.path.basename(urlparse(enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_enum(name: str, enum: WeightsEnum, progress: bool, **kwargs: object) -> nn.Module:
    """Model ``name`` with the weights ``enum`` (from the hub cache, or downloaded)."""
    cached = cached_file(enum)
    try:
        return tvm.get_model(name, weights=enum, progress=progress, **kwargs)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        if cached.exists():
            raise
        raise WeightsUnavailableError(
            f"Cannot load pretrained weights {enum} for {name!r}: they are not in the torch "
            f"hub cache ({cached}) and downloading failed ({exc}). Offline, either put the file "
            f"{cached.name} in $TORCH_HOME/hub/checkpoints (TORCH_HOME is now "
            f"{os.environ.get('TORCH_HOME', 'unset')}), pass weights='/path/to/weights.pth' "
            "(a local state dict), or use weights=None for random initialisation."
        ) from exc


def weights_preprocessing(enum: WeightsEnum) -> dict:
    """The resize, crop and normalisation of a classification model's weights."""
    t = enum.transforms()
    return {
        "resize_size": int(t.resize_size[0]),
        "crop_size": int(t.crop_size[0]),
        "mean": tuple(t.mean),
        "std": tuple(t.std),
        "interpolation": t.interpolation,
    }


def build(spec: str, weights: object, *, image_size: int | None = None,
          progress: bool = False, share_weights: bool = False) -> Built:
    """A torchvision network without its head, its weights' preprocessing and an id.

    Pretrained networks are memoised per process (:mod:`._memo`), so the fits of a
    cross-validation do not rebuild and reload the same weights. Random initialisation
    is never memoised.
    """
    model = spec.removeprefix(PREFIX)
    net, base, weights_id = _network(model, weights, progress, share_weights)
    net = strip_head(net)
    net.eval()
    return Built(net, model, base, weights_id)


def _network(model: str, weights, progress: bool,
             share_weights: bool) -> tuple[nn.Module, dict, str | None]:
    _check_model_name(model)
    base = weights_preprocessing(tvm.get_model_weights(model).DEFAULT)
    if weights is None:
        return tvm.get_model(model, weights=None), base, None
    is_file = looks_like_path(weights)
    if is_file:
        weights_id = file_id(weights)
        key = (model, weights_id)
    elif isinstance(weights, (str, WeightsEnum)):
        enum = resolve_enum(model, weights)
        base = weights_preprocessing(enum)
        key = (model, "enum", str(enum), torch.hub.get_dir())
        weights_id = f"torchvision:{model}:{enum}"
    else:
        raise TypeError(f"weights must be a str, a path or None, got {type(weights).__name__}")
    hit = _memo.recall(key, share_weights)
    if hit is not None:
        return hit[0], hit[1], weights_id
    if is_file:
        net = tvm.get_model(model, weights=None)
        load_into(net, weights)
    else:
        net = load_enum(model, enum, progress)
    _memo.remember(key, net, base)
    return net, base, weights_id
