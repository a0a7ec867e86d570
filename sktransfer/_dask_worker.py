"""The worker side of Dask calls: the shipped estimator unpickled once per worker process
(a memo keyed by its content token), and one partition's call run with the worker's
threads (:func:`run_partition`, the task :mod:`sktransfer._dask` builds).

Knows neither Dask's client side nor the estimators' classes: an sktransfer estimator is
recognised by what it declares (``_output_meta``).
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict

import numpy as np

from .errors import ImageInputError

_MEMO: OrderedDict[str, object] = OrderedDict()  # token -> unpickled estimator
_MEMO_SIZE = 2  # estimators kept per process (e.g. an extractor and a classifier)
_MEMO_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()  # one model call per process: it uses all the worker's threads
LOADS: dict[str, int] = {}  # token -> times unpickled in this process (tests count them)
PAYLOADS: dict[str, bytes] = {}  # token -> pickled estimator, from the worker plugin
KEEP_SHIPPED = 4  # estimators whose plugin stays registered (older ones are removed)


def _worker_threads() -> int | None:
    """The thread count of the Dask worker running this task, or None outside one."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def forget(token: str) -> None:
    """Drop an estimator from this process (its plugin was removed)."""
    with _MEMO_LOCK:
        PAYLOADS.pop(token, None)
        _MEMO.pop(token, None)


def _load(token: str, payload: bytes | None) -> object:
    """The estimator ``payload`` holds, unpickled once per process."""
    with _MEMO_LOCK:
        estimator = _MEMO.get(token)
        if estimator is not None:
            _MEMO.move_to_end(token)
            return estimator
        if payload is None and token not in PAYLOADS:
            raise RuntimeError(
                "this worker does not hold the estimator of this computation: its plugin was "
                f"removed (sktransfer keeps the last {KEEP_SHIPPED} estimators shipped); "
                "call transform/predict again to ship it")
        estimator = pickle.loads(PAYLOADS[token] if payload is None else payload)
        _for_worker(estimator, _worker_threads())
        _MEMO[token] = estimator
        LOADS[token] = LOADS.get(token, 0) + 1
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
        return estimator


def _for_worker(estimator: object, threads: int | None) -> None:
    """Adapt the worker's copy: quiet (the client shows progress; workers' bars would
    interleave), and decoding threads = the worker's threads where left to the default."""
    for step in [estimator, *(step for _, step in getattr(estimator, "steps", []))]:
        if not hasattr(step, "_output_meta"):  # not an sktransfer estimator
            continue
        step.verbose = False
        if threads is not None and getattr(step, "n_jobs", "absent") is None:
            step.n_jobs = threads


def run_partition(token: str, payload: bytes | None, block: object, method: str,
                  index: int) -> np.ndarray:
    """``method`` of the shipped estimator on one partition (a task on a worker).

    An unusable image raises :class:`ImageInputError` naming the partition and the file,
    which Dask re-raises on the client as the same exception.
    """
    from ._runtime import torch_threads

    estimator = _load(token, payload)
    # One model call at a time per process, with as many PyTorch threads as the worker
    # has (its share of the machine; Dask starts workers with OMP_NUM_THREADS=1): several
    # concurrent calls with that many threads each would oversubscribe the cores and hold
    # one batch of activations each. The setting is restored after the call, so a worker
    # living in the client's process (processes=False) leaves the client's as it was.
    with _CALL_LOCK, torch_threads(_worker_threads()):
        if len(block) == 0:
            return output_meta(estimator, method)
        try:
            return getattr(estimator, method)(block)
        except ImageInputError as exc:
            raise ImageInputError(f"partition {index} of the Dask input: {exc}") from None


def output_meta(estimator: object, method: str) -> np.ndarray:
    """An empty array with the dtype and trailing shape of ``estimator.method``'s output.

    sktransfer estimators declare theirs (``_output_meta``); for a
    :class:`~sklearn.pipeline.Pipeline`, the first step's embeddings are declared and the
    later steps are run on one row of zeros.
    """
    own = getattr(estimator, "_output_meta", None)
    if own is not None:
        return own(method)
    steps = getattr(estimator, "steps", None)
    if steps:
        first = steps[0][1]
        if hasattr(first, "_output_meta"):
            embedding = first._output_meta("transform")
            probe = np.zeros((1, *embedding.shape[1:]), dtype=embedding.dtype)
            out = np.asarray(getattr(estimator[1:], method)(probe))
            return np.empty((0, *out.shape[1:]), dtype=out.dtype)
    raise TypeError(
        f"{type(estimator).__name__} is neither an sktransfer estimator nor a Pipeline whose "
        "first step is one; it cannot run on Dask collections of images")
