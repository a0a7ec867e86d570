"""What a fitted estimator computes, as one plain torch module from pixels to outputs.

Each estimator describes itself with ``__sktransfer_deploy__()``, which returns a
:class:`Deployable`: a float32 CPU copy of its network (the fitted model is never
touched) wrapped to take a ``(N, 3, H, W)`` uint8 batch, already resized and cropped, and
return what its prediction method returns before any label lookup. Deployment formats
(:mod:`sktransfer.deploy`, ONNX) are built from it and nothing else, so a new estimator
becomes deployable by describing itself here, not by teaching every exporter about it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._fcn import FeatureTaps
from .backbones._heads import pool_features
from .images import Preprocessing

TASKS = ("transform", "classifier", "multilabel", "regressor", "segmenter")


@dataclass
class Deployable:
    """A fitted estimator's computation, from resized uint8 images to its outputs.

    Parameters
    ----------
    network : nn.Module
        Float32, on the CPU, in eval mode; maps a ``(N, 3, crop, crop)`` uint8 batch to
        one float32 tensor: embeddings ``(N, F)`` (``"transform"``), probabilities
        ``(N, C)`` (``"classifier"``, ``"multilabel"``), predictions ``(N,)`` or
        ``(N, T)`` in the units of ``y`` (``"regressor"``), class scores ``(N, C, crop,
        crop)`` (``"segmenter"``: the probabilities and masks at each image's own size
        are taken from them after resizing).
    task : str
        One of :data:`TASKS`.
    preprocessing : Preprocessing
        How images are resized and cropped before ``network`` (it normalises them itself).
    classes : ndarray or None
        The fitted labels, in the order of the probability columns.
    """

    network: nn.Module
    task: str
    preprocessing: Preprocessing
    classes: np.ndarray | None = None


def frozen_copy(module: nn.Module) -> nn.Module:
    """A float32 CPU copy of ``module`` in eval mode, with no parameter requiring grad."""
    module = copy.deepcopy(module).to("cpu").float().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class Normalised(nn.Module):
    """``body`` applied to the normalised batch (what an extractor's transform runs)."""

    def __init__(self, body: nn.Module, prep: Preprocessing):
        super().__init__()
        self.body, self.prep = body, prep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.prep.normalize(images))


class Tapped(nn.Module):
    """The pooled outputs of ``layers`` of ``body.net``, concatenated (an extractor's
    ``layer`` parameter)."""

    def __init__(self, body: nn.Module, layers: list[str], prep: Preprocessing):
        super().__init__()
        self.taps = FeatureTaps(body.net, {str(i): name for i, name in enumerate(layers)})
        self.prep, self.n_layers = prep, len(layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        found = self.taps(self.prep.normalize(images))
        return torch.cat([pool_features(found[str(i)]) for i in range(self.n_layers)], dim=1)


class Finished(nn.Module):
    """``finish(network(x))``: the output function of a fitted net (softmax, sigmoid...)."""

    def __init__(self, network: nn.Module, finish):
        super().__init__()
        self.network, self.finish = network, finish

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.finish(self.network(images))


class Mirrored(nn.Module):
    """The average of ``network`` on the images and on their mirror images (``tta=True``);
    maps (segmentation scores) are mirrored back before averaging."""

    def __init__(self, network: nn.Module, maps: bool = False):
        super().__init__()
        self.network, self.maps = network, maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mirrored = self.network(images.flip(-1))
        if self.maps:
            mirrored = mirrored.flip(-1)
        return (self.network(images) + mirrored) / 2


class Linear(nn.Module):
    """``x @ weight.T * scale + shift`` with fixed float32 values (a fitted linear map:
    a zero-shot head, a regressor's target scaling), then ``finish``."""

    def __init__(self, network: nn.Module, weight: np.ndarray | None, scale: object,
                 shift: object, finish=None, squeeze: bool = False):
        super().__init__()
        self.network = network
        tensor = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float32))  # noqa: E731
        self.register_buffer("weight", None if weight is None else tensor(weight))
        self.register_buffer("scale", tensor(scale))
        self.register_buffer("shift", tensor(shift))
        self.finish, self.squeeze = finish, squeeze

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images)
        if self.weight is not None:
            out = out @ self.weight.T
        out = out * self.scale + self.shift
        if self.finish is not None:
            out = self.finish(out)
        return out[:, 0] if self.squeeze else out


def check_tta(estimator: object) -> bool:
    """Whether the estimator's ``tta`` is the mirror average (``True``/``1``); refuse crops."""
    tta = getattr(estimator, "tta", False)
    if tta is False or tta is None:
        return False
    if tta is True or (not isinstance(tta, bool) and int(tta) == 1):
        return True
    raise ValueError(
        f"{type(estimator).__name__}(tta={tta!r}) averages {tta} crops taken from the image "
        "before its centre crop, which a deployed model never sees; set tta=True (centre "
        "crop and its mirror image, which deploys) or tta=False before exporting")


__all__: list[str] = []
