"""Networks on the ``meta`` device: shapes without arithmetic.

A copy of a module whose tensors live on the meta device runs its forward pass on shapes
only: no weights are read, no arithmetic is done, no memory is used for activations.
The FLOP count and the probe of a backbone's output size use it.
"""

from __future__ import annotations

import copy

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


def output_shape(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Size:
    """The shape of ``module``'s output for an input of ``input_shape`` (batch included).

    Run on a meta copy in evaluation mode; a forward pass that needs real values (Python
    branching on a tensor) runs on the module itself, on zeros, without gradients.
    """
    try:
        net = meta_copy(module).eval()
        with torch.no_grad():
            return net(torch.zeros(input_shape, device="meta")).shape
    except Exception:
        with torch.no_grad():
            return module(torch.zeros(input_shape)).shape
