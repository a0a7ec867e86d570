"""Heads and pooling: a classification network's head removed, its output pooled to one
feature vector per image (:class:`PooledBody`), or a segmentation model's feature maps
passed on as they are (:class:`GetterBody`)."""

from __future__ import annotations

import torch
from torch import nn

HEAD_NAMES = ("fc", "classifier", "head", "heads", "_fc")
_MLP_LAYERS = (nn.Linear, nn.Dropout, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.GELU, nn.SiLU,
               nn.Tanh, nn.Identity, nn.Flatten)


class PooledBody(nn.Module):
    """Wraps a head-less network; flattens its output, global-average-pooling maps first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_features(self.net(x))


class GetterBody(nn.Module):
    """A segmentation model's feature extractor: a dict of feature maps per batch."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def pool_features(out: torch.Tensor) -> torch.Tensor:
    """Global average pool ``(N, C, H, W)`` maps (or ``(N, T, C)`` tokens) to ``(N, C)``."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    elif hasattr(out, "logits"):  # e.g. GoogLeNetOutputs / InceptionOutputs
        out = out.logits
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    return out.flatten(1)


def _strip_sequential_head(seq: nn.Sequential, is_head: bool = False) -> nn.Module:
    """Drop the trailing MLP (Linear/Dropout/activation layers with a Linear) of a Sequential.

    ``is_head``: ``seq`` is a classifier attribute; one made of convolutions (SqueezeNet)
    is replaced by global pooling.
    """
    children = list(seq.children())
    cut = len(children)
    while cut > 0 and isinstance(children[cut - 1], _MLP_LAYERS):
        cut -= 1
    if not any(isinstance(c, nn.Linear) for c in children[cut:]):
        if is_head and any(isinstance(c, nn.Conv2d) for c in children):
            return nn.AdaptiveAvgPool2d(1)
        return seq
    kept = children[:cut]
    return nn.Sequential(*kept) if kept else nn.Identity()


def strip_head(net: nn.Module) -> nn.Module:
    """Remove the classification head of ``net`` in place and return it."""
    for attr in HEAD_NAMES:
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            setattr(net, attr, nn.Identity())
            break
        if isinstance(head, nn.Sequential):
            setattr(net, attr, _strip_sequential_head(head, is_head=True))
            break
    else:
        if isinstance(net, nn.Sequential):
            net = _strip_sequential_head(net)
    avgpool = getattr(net, "avgpool", None)
    if isinstance(avgpool, nn.AdaptiveAvgPool2d) and avgpool.output_size not in (1, (1, 1)):
        net.avgpool = nn.AdaptiveAvgPool2d(1)  # VGG/AlexNet: pool the last conv stage globally
    for attr in ("aux_logits", "AuxLogits", "aux1", "aux2"):  # Inception/GoogLeNet side heads
        if attr == "aux_logits" and hasattr(net, attr):
            net.aux_logits = False
        elif isinstance(getattr(net, attr, None), nn.Module):
            setattr(net, attr, None)
    return net
