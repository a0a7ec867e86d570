"""torchvision's semantic segmentation models (FCN, DeepLabV3, LR-ASPP) as a backbone spec.

``"fcn_resnet50"``, ``"deeplabv3_mobilenet_v3_large"``... (``torchvision:`` prefix
optional) become a :class:`~sktransfer.backbones.Backbone` whose body is the model's
feature extractor (a dict of feature maps) and whose ``decoder`` is its pretrained
segmentation head; the auxiliary head is dropped. Weights follow the same rules as
classification backbones: a weights name (``"DEFAULT"`` is the COCO subset with the
PASCAL VOC classes) loaded through torchvision's weights API and the torch hub cache,
``None`` (random), or a local state-dict file.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision import models as tvm

from .backbones import (
    Backbone,
    _load_enum,
    _looks_like_path,
    _resolve_enum,
    check_groups,
    default_groups,
    load_state_dict_file,
    make_preprocessing,
    parse_groups,
)

SEGMENTATION_MODELS = tuple(tvm.list_models(module=tvm.segmentation))


def is_segmentation_model(spec: object) -> bool:
    """Whether ``spec`` names one of torchvision's segmentation models."""
    return isinstance(spec, str) and spec.removeprefix("torchvision:") in SEGMENTATION_MODELS


class GetterBody(nn.Module):
    """A segmentation model's feature extractor: a dict of feature maps per batch."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def _preprocessing_base(enum) -> dict:
    t = enum.transforms()  # SemanticSegmentation: one resize, no crop
    size = int(t.resize_size[0])
    return {"resize_size": size, "crop_size": size, "mean": tuple(t.mean),
            "std": tuple(t.std), "interpolation": t.interpolation}


def load_segmentation_model(model: str, weights, *, image_size: int | None = None,
                            resize_size: int | None = None, mean=None, std=None,
                            groups: list | dict | None = None,
                            progress: bool = False) -> Backbone:
    """Build the :class:`Backbone` of a torchvision segmentation model (see module doc)."""
    name = model.removeprefix("torchvision:")
    enum_cls = tvm.get_model_weights(name)
    base = _preprocessing_base(enum_cls.DEFAULT)
    weights_id = None
    if weights is None:
        net = tvm.get_model(name, weights=None, weights_backbone=None, aux_loss=False)
    elif _looks_like_path(weights):
        path = Path(weights).resolve()
        net = tvm.get_model(name, weights=None, weights_backbone=None, aux_loss=False)
        state = {k: v for k, v in load_state_dict_file(path).items()
                 if not k.startswith("aux_classifier.")}
        result = net.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"Weights file {path} does not match {name}: "
                f"{len(result.missing_keys)} missing keys {result.missing_keys[:5]}, "
                f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:5]}")
        stat = path.stat()
        weights_id = f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    else:
        enum = _resolve_enum(name, weights)
        base = _preprocessing_base(enum)
        net = _load_enum(name, enum, progress, weights_backbone=None)  # all in enum's file
        weights_id = f"torchvision:{name}:{enum}"
    net.aux_classifier = None
    net.eval()
    getter = net.backbone
    layer_groups = default_groups(getter) if groups is None else parse_groups(groups)
    check_groups(getter, layer_groups)
    preprocessing = make_preprocessing(base, image_size, resize_size, mean, std)
    return Backbone(GetterBody(getter), 0, layer_groups, preprocessing, name, weights_id,
                    decoder=net.classifier)


__all__ = ["SEGMENTATION_MODELS", "is_segmentation_model", "load_segmentation_model"]
