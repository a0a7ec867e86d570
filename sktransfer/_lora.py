"""Low-rank adapters (LoRA, Hu et al. 2021) on the weights of a pretrained network.

An adapted layer computes with ``W + (alpha / rank) * (B @ A)`` instead of its frozen weight
``W``: only ``A`` (``rank`` x fan-in, initialised as PEFT does, Kaiming-uniform with
``a=sqrt(5)``) and ``B`` (fan-out x ``rank``, zero) train, so an adapted network gives exactly
the base network's outputs until its first update, and trains a few parameters per layer.
The update lives in a :mod:`torch.nn.utils.parametrize` parametrization of the weight: the
layer's own forward runs unchanged (autocast, channels_last, CUDA and fused attention work as
before), and :func:`merge_adapters` folds the update into a plain weight for inference.

Supported layers: :class:`~torch.nn.Linear` (``A``: rank x in, ``B``: out x rank),
:class:`~torch.nn.Conv2d` (its ``(out, in/groups, kh, kw)`` weight taken as an
``(out, in/groups*kh*kw)`` matrix) and :class:`~torch.nn.MultiheadAttention`, whose fused
``in_proj_weight`` (torchvision's and open_clip's ViTs) gets one adapter: q, k and v share one
low-rank update there, as they do on timm's fused ``qkv`` :class:`~torch.nn.Linear` (PEFT's
choice for timm). An attention layer with separate key/value sizes gets one adapter on each of
``q_proj_weight``, ``k_proj_weight`` and ``v_proj_weight``.

Parametrized modules pickle and deep-copy (torch refuses to pickle them): each copy gets its
own parametrized class, so merging a copy leaves the original adapted.
"""

from __future__ import annotations

import copy
import hashlib
import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["LowRankUpdate", "adapter_names", "adapter_state", "add_adapters",
           "default_targets", "has_adapters", "load_adapter_state", "merge_adapters",
           "tensor_digest"]


class LowRankUpdate(nn.Module):
    """The parametrization ``W -> W + scaling * (lora_B @ lora_A)``, reshaped to ``W``'s shape.

    Parameters
    ----------
    weight : Tensor
        The weight to adapt: its first dimension is the fan-out, the others the fan-in.
    rank : int
        The rank of the update (at most the smaller of fan-out and fan-in).
    scaling : float
        The factor of the update, ``alpha / rank``.
    """

    def __init__(self, weight: Tensor, rank: int, scaling: float) -> None:
        super().__init__()
        fan_out, fan_in = weight.shape[0], math.prod(weight.shape[1:])
        like = {"dtype": weight.dtype, "device": weight.device}
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in, **like))
        self.lora_B = nn.Parameter(torch.zeros(fan_out, rank, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = scaling
        self.base_requires_grad = weight.requires_grad  # restored by merge_adapters

    def forward(self, weight: Tensor) -> Tensor:
        return weight + self.scaling * (self.lora_B @ self.lora_A).view(weight.shape)


def _weight_names(layer: nn.Module) -> list[str]:
    """The names of the weights of ``layer`` that get an adapter; [] for unsupported layers."""
    if isinstance(layer, nn.MultiheadAttention):
        if layer._qkv_same_embed_dim:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return ["weight"] if isinstance(layer, (nn.Linear, nn.Conv2d)) else []


def default_targets(module: nn.Module) -> list[str]:
    """The layers that get adapters by default: the dense ones.

    Parameters
    ----------
    module : nn.Module
        The network to adapt (an estimator passes its body: its new head trains fully).

    Returns
    -------
    names : list of str
        The names (as ``module.named_modules()`` gives them) of every ``nn.Linear`` (timm's
        fused ``qkv`` included), every ``nn.MultiheadAttention`` (its ``in_proj_weight``) and
        every pointwise ``nn.Conv2d`` (1x1, ``groups=1``). Depthwise and kxk convolutions,
        normalisation layers, embeddings and layers with a parametrization are left alone.
    """
    return [name for name, layer in module.named_modules()
            if _weight_names(layer) and not parametrize.is_parametrized(layer)
            and (not isinstance(layer, nn.Conv2d)
                 or (layer.kernel_size == (1, 1) and layer.groups == 1))]


def add_adapters(module: nn.Module, names: list[str], rank: int, alpha: float) -> list[str]:
    """Add a low-rank adapter to each named layer of ``module``, in place.

    Each adapted weight is frozen (``requires_grad=False``); the adapters' parameters train.
    A layer narrower than ``rank`` (a squeeze-excitation 1x1 convolution with 4 channels, say)
    gets the rank of its weight, ``min(fan_out, fan_in)``, which already spans every update of
    that layer; every layer keeps the scaling ``alpha / rank``. Nothing changes if an error is
    raised.

    Parameters
    ----------
    module : nn.Module
        The network; its layers are modified in place.
    names : list of str
        The layers to adapt, as ``module.named_modules()`` names them (see
        :func:`default_targets`).
    rank : int
        The rank of each update, at least 1.
    alpha : float
        The update's scale: an adapter adds ``(alpha / rank) * B @ A`` to its weight.

    Returns
    -------
    list of str
        The names of the adapters' parameters, as ``module.named_parameters()`` gives them.

    Raises
    ------
    ValueError
        If ``rank`` is below 1, a name is repeated or names no layer, or a layer is not an
        ``nn.Linear``, ``nn.Conv2d`` or ``nn.MultiheadAttention``, or already has an adapter
        or another parametrization.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer of at least 1, got {rank!r}")
    layers = {}
    for name in names:
        if name in layers:
            raise ValueError(f"layer {name!r} is named twice")
        try:
            layers[name] = layer = module.get_submodule(name)
        except AttributeError:
            raise ValueError(f"there is no layer named {name!r} in the module") from None
        if not _weight_names(layer):
            raise ValueError(f"cannot add an adapter to layer {name!r}: it is a "
                             f"{type(layer).__name__}, not an nn.Linear, nn.Conv2d or "
                             "nn.MultiheadAttention")
        if parametrize.is_parametrized(layer):
            what = "an adapter" if has_adapters(layer) else "a parametrization"
            raise ValueError(f"cannot add an adapter to layer {name!r}: it already has {what}")
    added = []
    for name, layer in layers.items():
        order = list(layer._parameters)
        for tensor_name in _weight_names(layer):
            weight = getattr(layer, tensor_name)
            update = LowRankUpdate(weight, min(rank, *weight.flatten(1).shape), alpha / rank)
            update.base_order = order
            parametrize.register_parametrization(layer, tensor_name, update)
            weight.requires_grad_(False)
            prefix = f"{name}." if name else ""
            added += [f"{prefix}parametrizations.{tensor_name}.0.lora_{m}" for m in "AB"]
        _make_portable(layer)
    return added


def _updates(module: nn.Module):
    """(layer, tensor name, LowRankUpdate) for every adapted weight in ``module``."""
    for layer in module.modules():
        if parametrize.is_parametrized(layer):
            for tensor_name, plist in layer.parametrizations.items():
                for update in plist:
                    if isinstance(update, LowRankUpdate):
                        yield layer, tensor_name, update


def merge_adapters(module: nn.Module) -> int:
    """Fold every adapter of ``module`` into its weight, in place.

    The module becomes a plain one: its ``state_dict`` has the base network's keys, in the
    base network's order, and each merged weight is the original parameter object (same
    dtype, device and memory format, e.g. channels_last) with its ``requires_grad`` from
    before :func:`add_adapters`.

    Parameters
    ----------
    module : nn.Module
        The adapted network.

    Returns
    -------
    int
        The number of layers merged (0 when ``module`` has no adapter).
    """
    merged_layers = set()
    for layer, tensor_name, update in list(_updates(module)):
        with torch.no_grad(), torch.autocast(update.lora_A.device.type, enabled=False):
            merged = getattr(layer, tensor_name)
        # leave_parametrized=True would set_() the weight to the sum's strides; copy_ keeps
        # the original's (channels_last) and its identity (optimizers keep their references)
        parametrize.remove_parametrizations(layer, tensor_name, leave_parametrized=False)
        weight = getattr(layer, tensor_name)
        with torch.no_grad():
            weight.copy_(merged)
        weight.requires_grad_(update.base_requires_grad)
        params = layer._parameters
        keys = [k for k in update.base_order if k in params]
        ordered = [(k, params[k]) for k in keys + [k for k in params if k not in keys]]
        params.clear()
        params.update(ordered)
        merged_layers.add(id(layer))
    return len(merged_layers)


def adapter_names(module: nn.Module) -> list[str]:
    """The names of the adapters' parameters, as ``module.named_parameters()`` gives them.

    Parameters
    ----------
    module : nn.Module
        The network.

    Returns
    -------
    list of str
        The names, in ``named_parameters()``'s order; ``[]`` when ``module`` has no adapter.
    """
    ids = {id(p) for layer in module.modules() if isinstance(layer, LowRankUpdate)
           for p in (layer.lora_A, layer.lora_B)}
    return [name for name, p in module.named_parameters() if id(p) in ids]


def has_adapters(module: nn.Module) -> bool:
    """Whether ``module`` (or one of its layers) has an adapter.

    Parameters
    ----------
    module : nn.Module
        The network.

    Returns
    -------
    bool
        True when at least one weight has an adapter.
    """
    return any(isinstance(layer, LowRankUpdate) for layer in module.modules())


def adapter_state(module: nn.Module) -> dict[str, Tensor]:
    """The adapters' tensors only: a small export of what fine-tuning with adapters learnt.

    Parameters
    ----------
    module : nn.Module
        The adapted network.

    Returns
    -------
    dict of str to Tensor
        Detached copies of the adapters' parameters, keyed by :func:`adapter_names`.
    """
    params = dict(module.named_parameters())
    return {name: params[name].detach().clone() for name in adapter_names(module)}


def load_adapter_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Load adapter tensors from :func:`adapter_state` into ``module``, in place.

    ``module`` must have the same adapters (:func:`add_adapters` with the same layers, rank
    and alpha: the scaling is not part of the state).

    Parameters
    ----------
    module : nn.Module
        The network with adapters.
    state : dict of str to Tensor
        The tensors, keyed by :func:`adapter_names`.

    Raises
    ------
    ValueError
        If the keys differ from ``module``'s adapters or a tensor's shape differs.
    """
    params = dict(module.named_parameters())
    names = adapter_names(module)
    missing, unexpected = sorted(set(names) - set(state)), sorted(set(state) - set(names))
    if missing or unexpected:
        raise ValueError(f"the adapter state does not fit the module: missing {missing}, "
                         f"unexpected {unexpected}")
    for name in names:
        if tuple(state[name].shape) != tuple(params[name].shape):
            raise ValueError(f"adapter {name!r} has shape {tuple(params[name].shape)}, the "
                             f"state's has {tuple(state[name].shape)}")
    with torch.no_grad():
        for name in names:
            params[name].copy_(state[name])


# torch refuses to pickle a parametrized module (its class is made at run time) and its
# deep copies share that class (merging one would strip the other's weights): both go
# through a rebuild that registers the parametrizations again on the plain class.

def _make_portable(layer: nn.Module) -> None:
    cls = type(layer)  # torch made it for this layer alone
    cls.__reduce_ex__ = _reduce_ex
    cls.__deepcopy__ = _deepcopy


def _reduce_ex(self: nn.Module, protocol: int):
    return _unpickled, (parametrize.type_before_parametrizations(self),), self.__dict__


def _deepcopy(self: nn.Module, memo: dict) -> nn.Module:
    rebuild, args, state = _reduce_ex(self, 4)
    replica = rebuild(*args)
    memo[id(self)] = replica
    replica.__setstate__(copy.deepcopy(state, memo))
    return replica


def _unpickled(base: type) -> nn.Module:
    """An empty ``base`` instance whose ``__setstate__`` restores the parametrizations."""
    cls = type(base.__name__, (base,), {"__setstate__": _restore})
    return cls.__new__(cls)


def _restore(self: nn.Module, state: dict) -> None:
    self.__class__ = base = type(self).__bases__[0]
    modules = dict(state["_modules"])
    plists = modules.pop("parametrizations")
    base.__setstate__(self, {**state, "_modules": modules})
    for tensor_name, plist in plists.items():
        original = plist.original
        if isinstance(original, nn.Parameter):
            self.register_parameter(tensor_name, original)
        else:
            self.register_buffer(tensor_name, original)
        for parametrization in plist:
            parametrize.register_parametrization(self, tensor_name, parametrization,
                                                 unsafe=plist.unsafe)
    _make_portable(self)


def tensor_digest(tensors: dict) -> str:
    """A SHA-256 of named tensors (names, dtypes, shapes and values, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu")
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        flat = t.contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()
