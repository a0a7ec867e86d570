"""Networks on the ``meta`` device: shapes without arithmetic.

A copy of a module whose tensors live on the meta device runs its forward pass on shapes
only: no weights are read, no arithmetic is done, no memory is used for activations.
The FLOP count and the probe of a backbone's output size use it.
"""

from __future__ import annotations

import copy
import threading

import torch
from torch import nn


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose tensors live on the meta device.

    No tensor data is copied (a GPU model costs no GPU memory): every parameter and buffer
    is mapped to a meta tensor of its shape before the module is deep-copied.
    """
    memo: dict[int, torch.Tensor] = {}
    for param in module.parameters():
        memo[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"),
                                       requires_grad=param.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(module, memo)


_SHAPES: dict[tuple, torch.Size] = {}
_SHAPES_LOCK = threading.Lock()


def output_shape(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Size:
    """The shape of ``module``'s output for an input of ``input_shape`` (batch included).

    Run on a meta copy in evaluation mode, once per process for each architecture
    (:func:`architecture_key`) and input shape; a forward pass that needs real values
    (Python branching on a tensor) runs on the module itself, on zeros, without gradients.
    """
    key = (architecture_key(module), tuple(input_shape))
    with _SHAPES_LOCK:
        shape = _SHAPES.get(key)
    if shape is None:
        try:
            net = meta_copy(module).eval()
            with torch.no_grad():
                shape = net(torch.zeros(input_shape, device="meta")).shape
        except Exception:
            with torch.no_grad():
                shape = module(torch.zeros(input_shape)).shape
        with _SHAPES_LOCK:
            _SHAPES[key] = shape
    return shape


_SCALARS = frozenset({bool, int, float, str, type(None)})


def architecture_key(module: nn.Module, *, trained: bool = False) -> tuple:
    """What a module's FLOP count and output shape depend on, as a hashable value.

    Each submodule's class (the class object: a class redefined in a notebook, or made by
    a factory, is another key), its ``repr`` (layer sizes, strides, padding...), its plain
    scalar attributes (a flag its forward pass may read), which hooks it has, every
    parameter's and buffer's name, shape and dtype, and with ``trained`` which parameters
    require gradients. Not the module's identity, nor its weights' values.
    """
    parts = []
    for name, m in module.named_modules():
        scalars = tuple((k, v) for k, v in m.__dict__.items()
                        if type(v) in _SCALARS and k[0] != "_" and k != "training")
        hooks = (tuple(map(id, m._forward_hooks.values())),
                 tuple(map(id, m._forward_pre_hooks.values())))
        parts.append((name, type(m), scalars, hooks))
    params = tuple((name, tuple(p.shape), str(p.dtype), bool(p.requires_grad) and trained)
                   for name, p in module.named_parameters())
    buffers = tuple((name, tuple(b.shape), str(b.dtype)) for name, b in module.named_buffers())
    return tuple(parts), repr(module), params, buffers
