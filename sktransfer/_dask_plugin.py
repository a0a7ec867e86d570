"""The worker plugin that carries a fitted estimator to every Dask worker.

Imported only with ``distributed`` (by :mod:`sktransfer._dask` on the client, and by the
workers when they unpickle the plugin). The scheduler keeps registered plugins and hands
them to workers that join later, so a worker restarted after a crash gets the estimator
too: unlike scattered data, nothing is lost with a worker.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from . import _dask_worker


class EstimatorPlugin(WorkerPlugin):
    """Hands the pickled estimator ``payload`` to each worker process (unpickled lazily,
    on the first partition, by :func:`sktransfer._dask_worker.run_partition`)."""

    idempotent = True  # registering the same estimator again sends nothing

    def __init__(self, token: str, payload: bytes):
        self.token = token
        self.payload = payload

    def setup(self, worker: object) -> None:
        _dask_worker.PAYLOADS[self.token] = self.payload

    def teardown(self, worker: object) -> None:
        _dask_worker.forget(self.token)
