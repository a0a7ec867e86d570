"""What a call cost: wall time, images, floating-point operations, and energy if measured.

FLOPs are counted with torch's own counter (:class:`torch.utils.flop_counter.FlopCounterMode`)
on one small batch of a copy of the network on the ``meta`` device (shapes only, no
arithmetic), then scaled by the number of images that went through it. The counter counts
matrix products and convolutions (the bulk of the work), not element-wise operations, and
counts a multiply-add as 2 FLOPs. Backward FLOPs depend on what trains: frozen layers need no
weight gradients, and layers below the lowest trained one need no input gradients either.

Energy and CO2e come from the optional ``codecarbon`` package when it is installed: one
offline tracker per process, started on the first measured call (about 2 s once), then one
task per call. It uses power sensors where it can read them (Intel RAPL, NVIDIA NVML) and
otherwise an estimate from the CPU's load and its power table (see :doc:`/performance`).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._meta import architecture_key, meta_copy
from ._runtime import precision_name

__all__ = ["ComputeCost", "CostMeter", "count_flops", "fit_cost"]


@dataclasses.dataclass(frozen=True)
class ComputeCost:
    """The cost of one ``fit``, ``transform`` or ``predict`` call.

    Parameters
    ----------
    wall_time_s : float
        Seconds from the start to the end of the call.
    n_images : int
        Images that went through the network (forward passes, all epochs and views
        included; images served from an embedding cache are not counted).
    forward_flops, backward_flops : int
        Floating-point operations of those forward and backward passes (torch's counter).
    device : str
        Where the network ran (``"cpu"``, ``"cuda:0"``...).
    precision : str
        The compute dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    energy_kwh, co2_kg : float or None
        Energy used and CO2-equivalent emitted by the network's passes, from ``codecarbon``
        when it is installed; None otherwise. ``0.0`` for a call of the feature extractor
        that ran no network pass (every embedding from the cache, or ``fit``, which only
        loads the network): its measurement starts at the first batch.
    energy_method : str or None
        How the energy and CO2e were obtained: codecarbon's version, what it measured
        with, and the grid's carbon intensity used, e.g. ``"codecarbon 3.3.2 (RAM(),
        CPU(Cpu Load)), world-average grid"`` on a machine without power sensors (an
        estimate: the CPU's power from codecarbon's table times its load, RAM from a
        model); None when not measured, and with ``energy_kwh=0.0`` when no network pass
        ran.
    """

    wall_time_s: float
    n_images: int
    forward_flops: int
    backward_flops: int
    device: str
    precision: str
    energy_kwh: float | None = None
    co2_kg: float | None = None
    energy_method: str | None = None

    @property
    def total_flops(self) -> int:
        """Forward plus backward FLOPs."""
        return self.forward_flops + self.backward_flops

    def as_dict(self) -> dict:
        """Return the fields (and ``total_flops``) as a plain dict.

        Returns
        -------
        dict
            Field name to value, e.g. for a pandas DataFrame row.
        """
        return {**dataclasses.asdict(self), "total_flops": self.total_flops}

    def __add__(self, other: ComputeCost) -> ComputeCost:
        """The cost of both calls: times, images and FLOPs add up; energy when both have it.
        """
        if not isinstance(other, ComputeCost):
            return NotImplemented
        measured = self.energy_kwh is not None and other.energy_kwh is not None
        return ComputeCost(
            self.wall_time_s + other.wall_time_s, self.n_images + other.n_images,
            self.forward_flops + other.forward_flops,
            self.backward_flops + other.backward_flops,
            _join(self.device, other.device), _join(self.precision, other.precision),
            self.energy_kwh + other.energy_kwh if measured else None,
            self.co2_kg + other.co2_kg if measured else None,
            (_join(self.energy_method, other.energy_method) if self.energy_method
             and other.energy_method else self.energy_method or other.energy_method)
            if measured else None,
        )

    def __str__(self) -> str:
        text = (f"{self.wall_time_s:.1f} s, {self.n_images} images, "
                f"{self.total_flops / 1e12:.3g} TFLOP on {self.device} ({self.precision})")
        if self.energy_kwh is not None:
            text += f", {self.energy_kwh * 1000:.3g} Wh, {self.co2_kg * 1000:.3g} g CO2e"
        return text


def _join(a: str | None, b: str | None) -> str | None:
    return a if a == b else f"{a} + {b}"


def fit_cost(estimator: object) -> ComputeCost | None:
    """What fitting ``estimator`` cost in its network(s): the sum of its steps' ``fit_cost_``.

    Works on an sktransfer estimator, a :class:`~sklearn.pipeline.Pipeline` holding some
    (a :class:`PretrainedFeatureExtractor` in a pipeline records the embedding of the
    training images in its ``fit_cost_``), and a fitted search (its refitted
    ``best_estimator_``). Steps without a network (a ``LogisticRegression``) record nothing
    and add nothing: their time is not included.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator, pipeline or search.

    Returns
    -------
    cost : ComputeCost or None
        None when nothing in ``estimator`` records a cost.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sktransfer import fit_cost
    >>> fit_cost(make_pipeline(LogisticRegression())) is None
    True
    """
    if hasattr(estimator, "best_estimator_"):
        return fit_cost(estimator.best_estimator_)
    if hasattr(estimator, "steps"):
        parts = [fit_cost(step) for _, step in estimator.steps]
    else:
        parts = [getattr(estimator, "fit_cost_", None)]
    parts = [part for part in parts if part is not None]
    return sum(parts[1:], parts[0]) if parts else None


def count_flops(module: nn.Module, input_shape: tuple[int, ...], *,
                train: bool = False,
                forward: Callable[[nn.Module, torch.Tensor], object] | None = None,
                forward_key: object = None,
                ) -> tuple[int, int]:
    """Forward and backward FLOPs per image of ``module`` on inputs of ``input_shape``.

    Counted once per process for each architecture (:func:`architecture_key`), input shape,
    mode and set of trained parameters: a search that refits the same network many times
    counts it once (the count, on a copy of the network, takes a quarter of a second for
    an EfficientNet-B0 on 2 cores).

    Parameters
    ----------
    module : torch.nn.Module
        The network; it is not run and not changed: a copy on the meta device is (or, when
        its forward pass needs real values, a CPU copy on an all-zero batch).
    input_shape : tuple of int
        One image's shape, e.g. ``(3, 224, 224)``.
    train : bool, default=False
        Count in training mode, with a backward pass through the parameters that require
        gradients (the backward count is 0 otherwise, or when none does).
    forward : callable, default=None
        ``forward(module, batch)`` when the pass is not ``module(batch)`` (tapped layers).
    forward_key : hashable, default=None
        What ``forward`` does, for the memo (e.g. the tapped layers' names); without it a
        count with a ``forward`` is not memoised.

    Returns
    -------
    forward_flops, backward_flops : int
        Per image.
    """
    if forward is not None and forward_key is None:
        return _count_any(module, input_shape, train, forward)
    key = (architecture_key(module, trained=train), tuple(input_shape), train, forward_key)
    with _MEMO_LOCK:
        counts = _MEMO.get(key)
    if counts is None:
        counts = _count_any(module, input_shape, train, forward)
        with _MEMO_LOCK:
            _MEMO[key] = counts
    return counts


_MEMO: dict[tuple, tuple[int, int]] = {}
_MEMO_LOCK = threading.Lock()


def _count_any(module: nn.Module, input_shape: tuple[int, ...], train: bool,
               forward: Callable | None) -> tuple[int, int]:
    try:
        return _count(meta_copy(module), input_shape, train, forward, "meta")
    except Exception:
        # Python in forward that needs real values (x.item(), if x.any()): count on a
        # CPU copy, run on zeros
        return _count(copy.deepcopy(module).cpu(), input_shape, train, forward, "cpu")


def _count(net: nn.Module, input_shape: tuple[int, ...], train: bool,
           forward: Callable | None, device: str) -> tuple[int, int]:
    batch = 2  # BatchNorm in training mode needs more than one value per channel
    net.train(train)
    x = torch.zeros((batch, *input_shape), device=device)
    trains = train and any(p.requires_grad for p in net.parameters())
    run = forward or (lambda m, batch: m(batch))
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(trains):
        out = run(net, x)
    forward_flops = counter.get_total_flops()
    backward = 0
    if trains:
        with FlopCounterMode(display=False) as counter:
            _first_tensor(out).float().sum().backward()
        backward = counter.get_total_flops()
    return forward_flops // batch, backward // batch


def _first_tensor(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return _first_tensor(out[0])
    if isinstance(out, dict):
        return _first_tensor(next(iter(out.values())))
    raise TypeError(f"cannot find a tensor in the module's output {type(out).__name__}")


class _Energy:
    """One codecarbon tracker per process; each measured call is one of its tasks."""

    _lock = threading.Lock()
    _tracker: object = None
    _method: str | None = None
    _failed = False
    _running = False  # one task at a time: a measured call inside another (a teacher's
    # predictions inside a student's fit) is counted in the outer one, not started again

    @classmethod
    def start(cls) -> bool:
        if not energy_enabled():
            return False
        with cls._lock:
            if cls._failed or cls._running:
                return False
            try:
                if cls._tracker is None:
                    cls._tracker, cls._method = _new_tracker()
                    if cls._tracker is None:
                        cls._failed = True
                        return False
                cls._tracker.start_task("sktransfer")
                cls._running = True
            except Exception:  # energy is optional: never fail a fit for it
                logging.getLogger(__name__).warning(
                    "codecarbon failed to start; energy is not measured", exc_info=True)
                cls._failed = True
                return False
            return True

    @classmethod
    def stop(cls) -> tuple[float | None, float | None, str | None]:
        with cls._lock:
            cls._running = False
            try:
                data = cls._tracker.stop_task()
            except Exception:
                return None, None, None
            if data is None:
                return None, None, None
            grid = (f"{data.country_iso_code} grid" if data.country_iso_code
                    else "world-average grid")
            # codecarbon names what it measured with: RAPL or NVML sensors, or estimates
            # such as "CPU(Cpu Load)" (its power table x the load) and "RAM()" (a model).
            hardware = getattr(cls._tracker, "_conf", {}).get("hardware") or []
            how = f" ({', '.join(map(str, hardware))})" if hardware else ""
            return float(data.energy_consumed), float(data.emissions), (
                f"{cls._method}{how}, {grid}")


#: Environment variable that turns energy measurement off (``0``, ``false``, ``off``, ``no``).
#: codecarbon's first measurement in a process detects the hardware (about 2 s), which a
#: short-lived process such as a serving app or a test may not want to pay.
ENERGY_ENV = "SKTRANSFER_MEASURE_ENERGY"


def energy_enabled() -> bool:
    """Whether energy is measured: on unless :data:`ENERGY_ENV` turns it off."""
    return os.environ.get(ENERGY_ENV, "1").strip().lower() not in {"0", "false", "off", "no"}


def energy_available() -> bool:
    """Whether calls will report energy: measurement on and ``codecarbon`` installed."""
    return energy_enabled() and importlib.util.find_spec("codecarbon") is not None


def _new_tracker():
    try:
        import codecarbon
    except ImportError:
        return None, None
    # Its notices (unknown CPU model, fallbacks) are not the user's concern; codecarbon's
    # log_level sets the same level, too late for its first notice.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    # Offline: no request to a geolocation service. The grid's carbon intensity is the
    # country in codecarbon's own configuration (CODECARBON_COUNTRY_ISO_CODE or
    # .codecarbon.config), else its world average.
    tracker = codecarbon.OfflineEmissionsTracker(
        save_to_file=False, log_level="error", allow_multiple_runs=True,
        tracking_mode="process")
    return tracker, f"codecarbon {codecarbon.__version__}"


class CostMeter:
    """Accumulates what one call costs; :meth:`stop` gives the :class:`ComputeCost`.

    Started when created; :meth:`add` and :meth:`count` record images that went through
    the network; :meth:`stop` (idempotent) ends the clock and the energy measurement.
    With ``lazy_energy`` the energy measurement starts at :meth:`computing` (the first
    network pass) instead: a call that runs none (every embedding from the cache, a fit
    that only loads the network) reports 0 kWh without paying codecarbon's per-task cost.
    """

    def __init__(self, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, *, lazy_energy: bool = False) -> None:
        self.set_compute(device, dtype)
        self.n_images = 0
        self.forward_flops = 0
        self.backward_flops = 0
        self._cost: ComputeCost | None = None
        # this call's counts by module object (alive for the call): a training step asks
        # for every batch, and the structural key of the process-wide memo costs a repr
        self._counted: dict[tuple, tuple[int, int]] = {}
        self._energy_pending = lazy_energy
        self._energy = False if lazy_energy else _Energy.start()
        self._start = time.perf_counter()

    def computing(self) -> None:
        """The network is about to run: start the energy measurement if it waited."""
        if self._energy_pending:
            self._energy_pending = False
            self._energy = _Energy.start()

    def set_compute(self, device: torch.device | str, dtype: torch.dtype | None) -> None:
        """Where and in which dtype the network runs (known after the call started)."""
        self.device = str(device)
        self.precision = precision_name(dtype)

    def add(self, n_images: int, forward_per_image: int, backward_per_image: int = 0) -> None:
        """Record ``n_images`` forward (and backward) passes."""
        self.n_images += int(n_images)
        self.forward_flops += int(n_images) * int(forward_per_image)
        self.backward_flops += int(n_images) * int(backward_per_image)

    def add_flops(self, forward: int, backward: int = 0) -> None:
        """Record passes of something other than images (a text tower's prompts)."""
        self.forward_flops += int(forward)
        self.backward_flops += int(backward)

    def count(self, module: nn.Module, batch: torch.Tensor, train: bool) -> None:
        """Record one pass of ``batch`` (N images, or N x V views) through ``module``."""
        self.computing()
        n_images = batch.shape[:-3].numel()
        shape = tuple(batch.shape[-3:])
        trained = tuple(p.requires_grad for p in module.parameters()) if train else ()
        key = (id(module), shape, train, trained)
        if key not in self._counted:
            self._counted[key] = count_flops(module, shape, train=train)
        self.add(n_images, *self._counted[key])

    def stop(self) -> ComputeCost:
        """End the measurement (once) and return the cost."""
        if self._cost is None:
            seconds = time.perf_counter() - self._start
            if self._energy:
                energy = _Energy.stop()
            elif self._energy_pending and energy_available() and not _Energy._failed:
                energy = (0.0, 0.0, None)  # measured: no network pass, nothing to measure
            else:
                energy = (None, None, None)
            self._cost = ComputeCost(seconds, self.n_images, self.forward_flops,
                                     self.backward_flops, self.device, self.precision,
                                     *energy)
        return self._cost


def inference_flops(estimator: object) -> int | None:
    """Forward FLOPs per image of a fitted estimator's network (at its input size).

    For sktransfer estimators (fine-tuned: ``net_``; extractors and zero-shot
    classifiers: their backbone), a scikit-learn :class:`~sklearn.pipeline.Pipeline`
    (its first step that has a network; the scikit-learn steps after it cost next to
    nothing) or a fitted search (its ``best_estimator_``). None for anything else.
    """
    estimator = getattr(estimator, "best_estimator_", estimator)
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        for _, step in steps:
            flops = inference_flops(step)
            if flops is not None:
                return flops
        return None
    net = getattr(estimator, "net_", None)
    prep = getattr(estimator, "preprocessing_", None)
    if net is not None and prep is not None:
        return count_flops(net.module_, (3, prep.crop_size, prep.crop_size))[0]
    backbone = getattr(estimator, "backbone_", None)
    if backbone is not None:
        size = backbone.preprocessing.crop_size
        return count_flops(backbone.body, (3, size, size))[0]
    return None

