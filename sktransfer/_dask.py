"""Fitted estimators over Dask collections: lazy, one task per partition, the fitted
estimator shipped to each worker once.

How a call runs: the client pickles the fitted estimator (weights included, so workers
need no download and no ``TORCH_HOME``) and hands the bytes to every worker in a worker
plugin (see :func:`shipped`); the tasks carry only a content token, and each worker
process unpickles the estimator once (a memo keyed by that token). On a worker, PyTorch
runs with as many threads as the worker has and one model call at a time (see
:mod:`sktransfer._dask_worker`). Dask itself is imported only here and there, when a Dask
collection is passed: the single-machine path never needs it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict

import numpy as np

from ._dask_worker import KEEP_SHIPPED, run_partition
from .errors import ImageInputError

_SHIPPED: OrderedDict[tuple[str, str], object] = OrderedDict()  # registered plugins


def is_dask_collection(X: object) -> bool:
    """Whether ``X`` is a Dask collection (checked without importing Dask)."""
    return type(X).__module__.startswith("dask") and hasattr(X, "__dask_graph__")


class _Pickler(pickle.Pickler):
    """Pickles estimators without their cost records (``fit_cost_``, ``transform_cost_``).

    They change with every local call and mean nothing on a worker; leaving them out
    keeps the token (a hash of the pickled bytes), and so the workers' loaded copy, the
    same when an unchanged estimator is shipped again.
    """

    def reducer_override(self, obj: object) -> object:
        from sklearn.base import BaseEstimator

        from ._cost import ComputeCost

        if not isinstance(obj, BaseEstimator) or not any(
                isinstance(value, ComputeCost) for value in vars(obj).values()):
            return NotImplemented
        reduced = list(obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL))
        reduced[2] = {key: value for key, value in reduced[2].items()
                      if not isinstance(value, ComputeCost)}
        return tuple(reduced)


def shipped(estimator: object) -> tuple[str, object]:
    """The fitted ``estimator`` as ``(token, payload argument of the partition tasks)``.

    With a ``distributed`` client, the pickled bytes go to every worker in a worker
    plugin (:mod:`sktransfer._dask_plugin`; workers that join later, restarted ones
    included, get it from the scheduler) and the tasks carry only the token: the
    payload argument is ``None``. Other schedulers get the bytes as one graph literal.
    """
    import dask

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(estimator)
    payload = buffer.getvalue()
    token = hashlib.blake2b(payload, digest_size=16).hexdigest()
    client = _active_client()
    if client is not None and dask.config.get("scheduler", None) in (None, "dask.distributed"):
        _register(client, token, payload)
        return token, None
    return token, dask.delayed(payload, name=f"sktransfer-estimator-{token}",
                               traverse=False)


def _register(client: object, token: str, payload: bytes) -> None:
    """Give ``client``'s workers the estimator; keep the last :data:`KEEP_SHIPPED`."""
    from ._dask_plugin import EstimatorPlugin

    slot = (client.id, token)
    if slot not in _SHIPPED:
        client.register_plugin(EstimatorPlugin(token, payload), name=_plugin_name(token))
    _SHIPPED[slot] = client
    _SHIPPED.move_to_end(slot)
    while len(_SHIPPED) > KEEP_SHIPPED:
        (_, old), old_client = _SHIPPED.popitem(last=False)
        if old_client.status == "running":
            old_client.unregister_worker_plugin(_plugin_name(old))


def _plugin_name(token: str) -> str:
    return f"sktransfer-estimator-{token}"


def _active_client() -> object | None:
    """The ``distributed`` client computations go to by default, if any."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    return client if client.status == "running" else None


def partitions(X: object) -> tuple[list, list[float]]:
    """The partitions of ``X`` as delayed objects, and their lengths (NaN where unknown).

    Raises
    ------
    ImageInputError
        For a collection that cannot hold images (a many-column DataFrame, a dask array
        that is not a batch of images).
    """
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd

    if isinstance(X, da.Array):
        if X.ndim not in (3, 4):
            raise ImageInputError(
                f"X is a dask array of shape {X.shape}; expected a batch of images: uint8 "
                "NHWC or NHW, or float NCHW in [0, 1]")
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})  # whole images per block
        return list(X.to_delayed().ravel()), [float(n) for n in X.chunks[0]]
    if isinstance(X, dd.DataFrame):
        if len(X.columns) != 1:
            raise ImageInputError(
                f"X is a dask DataFrame with {len(X.columns)} columns; pass the one column "
                "that holds the images (e.g. ddf['path'])")
        X = X[X.columns[0]]
    if isinstance(X, (dd.Series, db.Bag)):
        blocks = list(X.to_delayed())
        return blocks, [np.nan] * len(blocks)
    raise ImageInputError(
        f"X is a {type(X).__module__}.{type(X).__name__}; sktransfer takes a dask Array of "
        "images, a dask Series or one-column DataFrame of paths, or a dask Bag of paths")


def partition_tasks(estimator: object, blocks: list, method: str,
                    numbers: list[int] | None = None) -> list:
    """One delayed ``estimator.method(block)`` per block (delayed partitions, or lists of
    paths), in order, all depending on one shipped copy of ``estimator``; ``numbers``
    are the partition numbers that error messages name (default: 0, 1, ...)."""
    import dask

    token, model = shipped(estimator)
    call = dask.delayed(run_partition, pure=True)
    numbers = range(len(blocks)) if numbers is None else numbers
    return [call(token, model, block, method, i)
            for i, block in zip(numbers, blocks, strict=True)]


def lazy_call(estimator: object, X: object, method: str, meta: np.ndarray) -> object:
    """``estimator.method(X)`` for a Dask collection ``X``, as a lazy dask array.

    ``meta`` is an empty array of the output's dtype and trailing shape. Chunk sizes are
    those of ``X`` where it knows them (dask arrays), unknown (NaN) otherwise; the
    trailing dimensions are always known.
    """
    import dask.array as da

    blocks, lengths = partitions(X)
    tasks = partition_tasks(estimator, blocks, method)
    tail = meta.shape[1:]
    parts = [da.from_delayed(task, shape=(n, *tail), dtype=meta.dtype, meta=meta)
             for task, n in zip(tasks, lengths, strict=True)]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
