"""Fully convolutional networks on a backbone: per-pixel class scores at the input's size.

:class:`FeatureTaps` turns any backbone whose layer groups give ``(N, C, H, W)`` maps into
a multi-scale feature extractor, without knowing its architecture: the outputs of the
groups' last modules are recorded by forward hooks that live only during one forward
pass (nothing stays registered, so the network pickles and copies as it is).
:class:`FCNHead` is the decoder of Long, Shelhamer and Darrell's FCN: a 1x1 classifier on
the stride-32 features, plus (FCN-16s/8s) 1x1 classifiers on the stride-16 and stride-8
features added after bilinear upsampling. :class:`TorchvisionDecoder` wraps the decoder
of one of torchvision's segmentation models with new final convolutions.
:class:`SegmentationNet` puts body and decoder together and upsamples bilinearly to the
input size.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ._training import TransferNet
from .images import Preprocessing

#: Side of the all-zero image that sizes the stages of a backbone (a multiple of 32).
PROBE_SIZE = 128
#: How many finer scales each ``skip`` setting adds to the coarsest one.
SKIP_SCALES = {False: 0, "32s": 0, "16s": 1, True: 2, "8s": 2}


class FeatureTaps(nn.Module):
    """Run ``net`` and return the outputs of its submodules ``taps`` (name per key)."""

    def __init__(self, net: nn.Module, taps: dict[str, str]):
        super().__init__()
        self.net = net
        self.taps = dict(taps)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        handles = []
        for key, name in self.taps.items():
            def record(module, args, out, key=key):
                found[key] = out
            handles.append(self.net.get_submodule(name).register_forward_hook(record))
        try:
            self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        return found


def stage_shapes(net: nn.Module, groups: list[tuple[str, list[str]]],
                 size: int = PROBE_SIZE) -> list[tuple[str, str, tuple]]:
    """``(group, its last module, output shape)`` of each layer group, for a zero image."""
    taps = {group: members[-1] for group, members in groups}
    probe = FeatureTaps(net, taps)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            found = probe(torch.zeros(1, 3, size, size))
    finally:
        net.train(was_training)
    return [(group, taps[group], tuple(found[group].shape) if isinstance(
        found.get(group), torch.Tensor) else ()) for group, _ in groups]


def choose_taps(net: nn.Module, groups: list[tuple[str, list[str]]], skip: bool | str,
                name: str, size: int) -> tuple[dict[str, str], dict[str, int]]:
    """The modules whose outputs the FCN reads, coarsest first, and their channels.

    The coarsest is the last layer group giving maps (stride 32 for the usual backbones);
    ``skip``
    adds the last group at half, then a quarter of that stride (FCN-16s, FCN-8s).
    Stages are sized on a :data:`PROBE_SIZE` image, or on one of the network's input
    ``size`` for networks that take no other (vision transformers).
    """
    try:
        probe = PROBE_SIZE
        shapes = stage_shapes(net, groups, probe)
    except Exception:
        probe = size
        shapes = stage_shapes(net, groups, probe)
    maps = [(group, module, shape) for group, module, shape in shapes if len(shape) == 4]
    last = max((k for k, (_, _, shape) in enumerate(shapes) if len(shape) == 4), default=-1)
    if any(len(shape) == 3 for _, _, shape in shapes[last + 1:]):
        maps = []  # maps followed by tokens (a ViT's patch embedding): not a convnet
    if not maps:  # trailing groups that pool (timm's pre_logits) are simply not read
        found = shapes[-1][2] or "no tensor"
        raise ValueError(
            f"FineTuneSegmenter needs a backbone whose layer groups give feature maps "
            f"(N, C, H, W) up to the last one that does not pool; {name}'s last group, "
            f"{shapes[-1][0]!r}, gives {found} (transformers give tokens). Use a "
            "convolutional backbone, or groups= naming convolutional stages")
    strides = [(group, module, round(probe / shape[2]), shape[1])
               for group, module, shape in maps]
    _, top_module, top_stride, top_channels = strides[-1]
    taps, channels = {"out": top_module}, {"out": top_channels}
    for k in range(1, SKIP_SCALES[skip] + 1):
        wanted = top_stride / 2 ** k
        finer = [(m, c) for _, m, s, c in strides if s == wanted]
        if finer:
            taps[f"skip{k}"], channels[f"skip{k}"] = finer[-1]
    return taps, channels


class FCNHead(nn.Module):
    """1x1 class scores on the coarsest features, plus finer ones added after upsampling.

    The finer score layers start at zero (as in the FCN paper), so training starts from
    the coarse prediction and learns what the skips add.
    """

    def __init__(self, channels: dict[str, int], n_classes: int):
        super().__init__()
        self.score = nn.ModuleDict(
            {key: nn.Conv2d(c, n_classes, kernel_size=1) for key, c in channels.items()})
        for key, conv in self.score.items():
            if key != "out":
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.score["out"](features["out"])
        for key, conv in self.score.items():
            if key == "out":
                continue
            skip = conv(features[key])
            out = F.interpolate(out, size=skip.shape[-2:], mode="bilinear",
                                align_corners=False) + skip
        return out


class TorchvisionDecoder(nn.Module):
    """The pretrained decoder of a torchvision segmentation model, with its final 1x1
    convolutions replaced by new ones for ``n_classes``."""

    def __init__(self, classifier: nn.Module, n_classes: int):
        super().__init__()
        self.takes_dict = hasattr(classifier, "low_classifier")  # LR-ASPP: low and high
        if self.takes_dict:
            for attr in ("low_classifier", "high_classifier"):
                old = getattr(classifier, attr)
                setattr(classifier, attr, nn.Conv2d(old.in_channels, n_classes, 1))
        else:
            old = classifier[-1]
            classifier[-1] = nn.Conv2d(old.in_channels, n_classes, 1)
        self.classifier = classifier

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(features if self.takes_dict else features["out"])


class SegmentationNet(TransferNet):
    """A feature body and a decoder; class scores upsampled to the input's size.

    The body's ``net`` holds the layer groups (so freezing, layer-wise rates and the
    BatchNorm modes work as for classification); everything in ``head`` is new or
    decoder weights, and trains from the first epoch.
    """

    def __init__(self, body: nn.Module, head: nn.Module, prep: Preprocessing,
                 channels_last: bool = False, batchnorm: str = "train"):
        super().__init__(body, 0, 0, prep, channels_last=channels_last, batchnorm=batchnorm,
                         head=head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if not isinstance(features, dict):
            features = OrderedDict(out=features)
        scores = self.head(features)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
