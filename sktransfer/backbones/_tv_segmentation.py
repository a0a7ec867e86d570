"""torchvision's semantic segmentation models (FCN, DeepLabV3, LR-ASPP) as a backbone spec.

``"fcn_resnet50"``, ``"deeplabv3_mobilenet_v3_large"``... (``torchvision:`` prefix
optional) become a :class:`~sktransfer.backbones.Backbone` whose body is the model's
feature extractor (a dict of feature maps) and whose ``decoder`` is its pretrained
segmentation head; the auxiliary head is dropped. Weights follow the same rules as
classification backbones: a weights name (``"DEFAULT"`` is the COCO subset with the
PASCAL VOC classes) loaded through torchvision's weights API and the torch hub cache,
``None`` (random), or a local state-dict file. The only module that knows these names.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import models as tvm

from ._backbone import Built
from ._torchvision import PREFIX, load_enum, resolve_enum
from ._weights import file_id, load_state_dict_file, looks_like_path

SEGMENTATION = True
SEGMENTATION_MODELS = tuple(tvm.list_models(module=tvm.segmentation))


def accepts(spec: object) -> bool:
    """Whether ``spec`` names one of torchvision's segmentation models."""
    return isinstance(spec, str) and spec.removeprefix(PREFIX) in SEGMENTATION_MODELS


def _preprocessing_base(enum) -> dict:
    t = enum.transforms()  # SemanticSegmentation: one resize, no crop
    size = int(t.resize_size[0])
    return {"resize_size": size, "crop_size": size, "mean": tuple(t.mean),
            "std": tuple(t.std), "interpolation": t.interpolation}


def build(spec: str, weights: object, *, image_size: int | None = None,
          progress: bool = False, share_weights: bool = False) -> Built:
    """The feature extractor and pretrained decoder of a segmentation model (see module
    doc); ``share_weights`` is not used (segmentation models are not memoised)."""
    name = spec.removeprefix(PREFIX)
    enum_cls = tvm.get_model_weights(name)
    base = _preprocessing_base(enum_cls.DEFAULT)
    weights_id = None
    if weights is None:
        net = tvm.get_model(name, weights=None, weights_backbone=None, aux_loss=False)
    elif looks_like_path(weights):
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
        weights_id = file_id(path)
    else:
        enum = resolve_enum(name, weights)
        base = _preprocessing_base(enum)
        net = load_enum(name, enum, progress, weights_backbone=None)  # all in enum's file
        weights_id = f"torchvision:{name}:{enum}"
    net.aux_classifier = None
    net.eval()
    return Built(net.backbone, name, base, weights_id, decoder=net.classifier)
