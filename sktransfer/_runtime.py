"""Where and how models run: device choice, mixed precision, memory format."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping

import torch

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu; anything else is checked and returned.

    Raises
    ------
    ValueError
        If the device string is invalid or the device is not available here.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"Invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here; "
                         "use device='auto' or 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available here")
    return dev


# CPU features that compute bfloat16 in hardware: x86 AVX-512 BF16 and AMX-BF16
# (Cooper Lake, Sapphire Rapids and later Xeons; AMD Zen 4 and later), Arm BF16 (Neoverse
# V1/N2 and later: Graviton 3/4, Grace...).
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


@functools.cache
def cpu_features() -> Mapping[str, object]:
    """The CPU's features as torch detects them (cpuinfo), or the OS's CPU flags.

    ``torch.cpu.get_capabilities()`` where this torch has it; otherwise the ``flags``
    (x86) or ``Features`` (Arm) line of ``/proc/cpuinfo`` on Linux; empty elsewhere.
    """
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return dict(get())
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return dict.fromkeys(value.split(), True)
    except OSError:
        pass
    return {}


#: Environment variable that overrides :func:`cpu_has_native_bf16`: ``1`` (or ``yes``,
#: ``true``, ``on``) makes it answer yes, ``0`` (``no``, ``false``, ``off``) no; unset or
#: empty, the CPU is asked. For contributors: the test suite runs ``precision="auto"``'s
#: bfloat16 path on a CPU without native bf16 (emulated bf16 rounds each value as native
#: bf16 does, only slower) and its float32 path on one with it
#: (``pytest --native-bf16=yes|no|flip``).
NATIVE_BF16_ENV = "SKTRANSFER_NATIVE_BF16"

_YES, _NO = {"1", "yes", "true", "on"}, {"0", "no", "false", "off"}


def _bf16_override() -> bool | None:
    value = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if not value:
        return None
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(f"{NATIVE_BF16_ENV}={os.environ[NATIVE_BF16_ENV]!r}: use 1 or 0 "
                     "(or unset it to ask the CPU)")


def cpu_detects_native_bf16() -> bool:
    """Whether this CPU's features include a bfloat16 one (``NATIVE_BF16_FEATURES``),
    whatever :data:`NATIVE_BF16_ENV` says."""
    features = cpu_features()
    return any(bool(features.get(name)) for name in NATIVE_BF16_FEATURES)


def cpu_has_native_bf16() -> bool:
    """Whether ``precision="auto"`` treats this CPU as computing bfloat16 in hardware.

    The CPU's own answer (:func:`cpu_detects_native_bf16`) unless :data:`NATIVE_BF16_ENV`
    overrides it. oneDNN's own query (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is
    not used: it also answers yes for AVX-512 CPUs without BF16 instructions, where oneDNN
    converts to float32 and bfloat16 autocast was measured slower than float32 (see
    :doc:`/performance`).
    """
    override = _bf16_override()
    return cpu_detects_native_bf16() if override is None else override


def precision_name(dtype: torch.dtype | None) -> str:
    """``"float32"``, ``"bfloat16"`` or ``"float16"``: the compute dtype's name."""
    return str(dtype or torch.float32).removeprefix("torch.")


def compute_path(device: torch.device | str, dtype: torch.dtype | None) -> str:
    """Which arithmetic actually ran, for reading a measured figure wherever it was taken.

    ``"float32"``; on a CPU ``"native bf16"`` or ``"emulated bf16"`` (from the CPU's
    features, not :data:`NATIVE_BF16_ENV`); on a GPU ``"bf16 autocast (cuda)"`` or
    ``"fp16 autocast (cuda)"``.
    """
    device = torch.device(device)
    if dtype is None or dtype == torch.float32:
        return "float32"
    short = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if device.type != "cpu":
        return f"{short} autocast ({device.type})"
    if dtype == torch.bfloat16:
        return f"{'native' if cpu_detects_native_bf16() else 'emulated'} bf16"
    return "fp16 (cpu)"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for full float32.

    ``"auto"`` means bfloat16 on GPUs that support it, float16 on other GPUs, bfloat16 on
    CPUs that compute it in hardware (:func:`cpu_has_native_bf16`) and float32 on other
    CPUs, where emulated bfloat16 is slower than float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype`` on ``device``, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(device: torch.device) -> bool:
    """Whether convolutions run in channels_last memory format on ``device``.

    On CUDA it feeds tensor cores; on the CPU it was measured faster too (2 cores, batch
    32: inference at 224 px, resnet18 0.90 s vs 1.19 s and efficientnet_b0 1.22 s vs
    1.59 s per batch; a resnet18 training step at 128 px 0.64 s vs 0.66 s).
    """
    return device.type in ("cuda", "cpu")


def park_on_cpu(module: torch.nn.Module, device: torch.device) -> None:
    """Move ``module`` off ``device`` to the CPU and hand the GPU's cached blocks back.

    Models wait on the CPU between calls, so a fitted estimator holds no GPU memory;
    a no-op when ``device`` is the CPU.
    """
    if device.type == "cpu":
        return
    module.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


@contextlib.contextmanager
def torch_threads(n_threads: int | None):
    """Run the block with ``n_threads`` intra-op CPU threads (None: leave torch's setting)."""
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
