"""The :class:`Backbone` every provider's spec becomes, and :class:`Built`, what a
provider hands to :func:`~sktransfer.backbones.load_backbone` to finish."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..images import Preprocessing


@dataclass
class Backbone:
    """A pretrained network ready for transfer learning.

    Parameters
    ----------
    body : nn.Module
        Maps a normalised ``(N, 3, H, W)`` batch to pooled features ``(N, num_features)``.
        Its classification head is removed.
    num_features : int
        Size of the pooled feature vector.
    groups : list of (str, list of str)
        Ordered layer groups, stem first and last block last; each is a name and the
        names of the submodules of ``body.net`` it holds.
    preprocessing : Preprocessing
        Resize, crop and normalisation the weights expect.
    name : str
        A readable name of the architecture.
    weights_id : str or None
        Identifies the pretrained weights without hashing them (torchvision weights name,
        or a local file's path, size and modification time); None where only the tensors
        themselves identify them.
    decoder : nn.Module or None
        The pretrained decoder of a segmentation model (its ``body`` then returns a dict
        of feature maps); None for classification backbones.
    text : nn.Module or None
        The text tower of a vision-language model: called with a list of strings, it
        returns their unit-length embeddings in the space of the body's (unit-length)
        image embeddings; its ``logit_scale`` attribute is the model's temperature. None
        for image-only backbones.
    """

    body: nn.Module
    num_features: int
    groups: list[tuple[str, list[str]]]
    preprocessing: Preprocessing
    name: str
    weights_id: str | None = None
    decoder: nn.Module | None = None
    text: nn.Module | None = None


@dataclass
class Built:
    """What a provider built from a spec, before the shared finishing steps.

    Parameters
    ----------
    net : nn.Module
        The network without its classification head, in eval mode; its submodules are
        what layer groups name.
    name : str
        A readable name of the architecture.
    preprocessing : dict or None
        The weights' own preprocessing as keyword arguments of
        :class:`~sktransfer.images.Preprocessing`; None for ImageNet's.
    weights_id : str or None
        What identifies the weights (see :class:`Backbone`).
    groups : list of (str, list of str) or None
        The provider's own layer groups; None to derive them from the architecture.
    decoder : nn.Module or None
        A segmentation model's pretrained decoder; ``net`` then returns feature maps.
    text : nn.Module or None
        A vision-language model's text tower (see :class:`Backbone`).
    """

    net: nn.Module
    name: str
    preprocessing: dict | None = None
    weights_id: str | None = None
    groups: list[tuple[str, list[str]]] | None = None
    decoder: nn.Module | None = None
    text: nn.Module | None = None
