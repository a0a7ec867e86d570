"""A :class:`torch.nn.Module` as a backbone spec: deep-copied (the caller's module is never
modified), its head removed; ``weights`` keep its own (``"DEFAULT"``, ``None``) or load a
local state-dict file into it."""

from __future__ import annotations

import copy

from torch import nn

from ._backbone import Built
from ._heads import strip_head
from ._weights import load_into, looks_like_path

SEGMENTATION = False


def accepts(spec: object) -> bool:
    """Whether ``spec`` is a module."""
    return isinstance(spec, nn.Module)


def build(spec: nn.Module, weights: object, *, image_size: int | None = None,
          progress: bool = False, share_weights: bool = False) -> Built:
    """A copy of ``spec`` without its head."""
    net = copy.deepcopy(spec)
    if looks_like_path(weights):
        load_into(net, weights)
    elif weights not in (None, "DEFAULT"):
        raise ValueError(
            f"weights={weights!r} cannot apply to an nn.Module; use 'DEFAULT' or None to "
            "keep its weights, or a path to a state dict file"
        )
    net = strip_head(net)
    net.eval()
    return Built(net, type(spec).__name__)
