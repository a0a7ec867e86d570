"""Which arithmetic path a benchmark's figure was measured on, to print next to it.

A ratio measured with native bfloat16 on one CPU and emulated bfloat16 (or float32) on
another reads differently, so every benchmark names the path each side ran in, with the
library's words (:func:`sktransfer._runtime.compute_path`): ``"float32"``,
``"native bf16"``, ``"emulated bf16"``, ``"bf16 autocast (cuda)"``...

    path_of(ext.transform_cost_)          # what a fitted estimator recorded (preferred)
    path_of(device, "auto")               # what a precision means on a device
    path_of(device)                       # a float32 loop on device
    path_of("cpu", show_device=True)      # "float32 on cpu": when the sides' devices differ
    sides(sktransfer=..., hand_loop=...)  # "sktransfer: native bf16, hand loop: float32"
"""

from __future__ import annotations

import torch

from sktransfer._runtime import PRECISIONS, autocast_dtype, compute_path


def path_of(cost_or_device, dtype=None, *, show_device: bool = False) -> str:
    """The arithmetic path of a cost report, or of ``dtype`` on a device.

    Parameters
    ----------
    cost_or_device : ComputeCost, torch.device or str
        A fitted estimator's cost report (``transform_cost_``, ``fit_cost_``: its
        ``device`` and ``precision`` are read, and ``dtype`` must be None), or a device
        (``"cpu"``, ``"cuda:0"``, ``torch.device``).
    dtype : torch.dtype, str or None, default=None
        With a device: a torch dtype, or a precision as sktransfer's estimators take it
        (``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``: what it means on that
        device); None is float32.
    show_device : bool, default=False
        Append `` on <device>``: for a comparison whose two sides ran on different devices
        (the words name the device only for GPU autocast).

    Returns
    -------
    str
        ``compute_path``'s words; a cost report that joined two calls with different
        precisions (``"float32 + bfloat16"``) gives both (``"float32 + native bf16"``).
    """
    if hasattr(cost_or_device, "precision"):
        if dtype is not None:
            raise TypeError("pass a cost report alone, or a device and a dtype")
        devices = str(cost_or_device.device).split(" + ")
        precisions = str(cost_or_device.precision).split(" + ")
        if len(devices) == 1:
            devices *= len(precisions)
        if len(precisions) == 1:
            precisions *= len(devices)
        paths = dict.fromkeys(path_of(d, p, show_device=show_device)
                              for d, p in zip(devices, precisions, strict=True))
        return " + ".join(paths)
    device = torch.device(cost_or_device)
    if isinstance(dtype, str):
        if dtype not in PRECISIONS:
            raise ValueError(f"unknown precision {dtype!r}: use one of {PRECISIONS}")
        dtype = autocast_dtype(device, dtype)
    path = compute_path(device, dtype)
    return f"{path} on {device}" if show_device else path


def sides(**paths: str) -> str:
    """``sides(sktransfer="native bf16", hand_loop="float32")`` ->
    ``"sktransfer: native bf16, hand loop: float32"`` (underscores read as spaces)."""
    return ", ".join(f"{name.replace('_', ' ')}: {path}" for name, path in paths.items())
