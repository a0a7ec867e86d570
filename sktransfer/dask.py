"""Scaling out on Dask (``pip install sktransfer[dask]``).

Fitted sktransfer estimators take Dask collections directly: ``transform``,
``predict`` and ``predict_proba`` return lazy dask arrays. This module adds what a
whole fitted :class:`~sklearn.pipeline.Pipeline` needs (:class:`ParallelPostFit`) and
:func:`connect`, which the command line's ``--dask`` option uses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._dask import is_dask_collection, lazy_call
from ._dask_worker import output_meta


def _has(method: str):
    def check(self) -> bool:
        return hasattr(self.estimator, method)

    return check


class ParallelPostFit(MetaEstimatorMixin, BaseEstimator):
    """Predict and transform Dask collections of images with a fitted pipeline, lazily.

    Every partition of the input runs through the whole wrapped estimator on a worker
    (the network is shipped to each worker once); the result is a lazy
    ``dask.array.Array`` in the input's order. In-memory inputs go straight to the
    wrapped estimator. ``dask_ml.wrappers.ParallelPostFit`` does not work here: it
    probes the estimator with a two-dimensional array, which is not a batch of images.

    Parameters
    ----------
    estimator : estimator
        An sktransfer estimator, or a :class:`~sklearn.pipeline.Pipeline` whose first step
        is a :class:`~sktransfer.PretrainedFeatureExtractor` (or another sktransfer
        transformer). Used as it is when already fitted; :meth:`fit` fits a clone.

    Attributes
    ----------
    estimator_ : estimator
        The clone fitted by :meth:`fit`; absent when the wrapped estimator was passed
        fitted.

    See Also
    --------
    sktransfer.PretrainedFeatureExtractor.transform : Takes Dask collections itself.

    Examples
    --------
    >>> from sktransfer.dask import ParallelPostFit
    >>> wrapped = ParallelPostFit(pipeline)  # doctest: +SKIP
    >>> labels = wrapped.predict(ddf["path"]).compute()  # doctest: +SKIP
    """

    def __init__(self, estimator: object):
        self.estimator = estimator

    def fit(self, X: object, y: object = None, **fit_params: object) -> ParallelPostFit:
        """Fit a clone of the wrapped estimator on in-memory data.

        Parameters
        ----------
        X : images
            In memory (a list of paths, an array...): fitting one model stays on one
            machine; a search spreads fits over workers instead (see the user guide).
        y : array-like, default=None
            Targets.
        **fit_params : dict
            Passed to the estimator's ``fit``.

        Returns
        -------
        self : ParallelPostFit
            The fitted wrapper.
        """
        if is_dask_collection(X) or is_dask_collection(y):
            raise TypeError(
                "ParallelPostFit fits on in-memory data: compute the training images (or "
                "their paths) first, e.g. X.compute(); prediction is what runs on Dask")
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        return self

    def _fitted(self) -> object:
        estimator = getattr(self, "estimator_", self.estimator)
        check_is_fitted(estimator)
        return estimator

    def _call(self, method: str, X: object) -> object:
        estimator = self._fitted()
        if not is_dask_collection(X):
            return getattr(estimator, method)(X)
        return lazy_call(estimator, X, method, output_meta(estimator, method))

    @available_if(_has("predict"))
    def predict(self, X: object) -> object:
        """Predictions of the wrapped estimator.

        Parameters
        ----------
        X : images or Dask collection of images
            As the wrapped estimator takes them, or a dask Array / Series / one-column
            DataFrame / Bag of them.

        Returns
        -------
        y_pred : ndarray or dask.array.Array
            Lazy for a Dask collection, one row per image in the input's order.
        """
        return self._call("predict", X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X: object) -> object:
        """Class probabilities of the wrapped estimator.

        Parameters
        ----------
        X : images or Dask collection of images
            As for :meth:`predict`.

        Returns
        -------
        proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
            Lazy for a Dask collection.
        """
        return self._call("predict_proba", X)

    @available_if(_has("decision_function"))
    def decision_function(self, X: object) -> object:
        """Decision function of the wrapped estimator.

        Parameters
        ----------
        X : images or Dask collection of images
            As for :meth:`predict`.

        Returns
        -------
        scores : ndarray or dask.array.Array
            Lazy for a Dask collection.
        """
        return self._call("decision_function", X)

    @available_if(_has("transform"))
    def transform(self, X: object) -> object:
        """Output of the wrapped estimator's ``transform``.

        Parameters
        ----------
        X : images or Dask collection of images
            As for :meth:`predict`.

        Returns
        -------
        Xt : ndarray or dask.array.Array
            Lazy for a Dask collection.
        """
        return self._call("transform", X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.input_tags = inner.input_tags
        tags.estimator_type = inner.estimator_type
        return tags


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """Restore this process's environment variables on exit.

    Dask's nannies write ``OMP_NUM_THREADS=1`` (and more) into the environment of the
    process that starts them, to pass it on to their workers; the caller's own
    subprocesses would inherit it. :func:`connect` starts local clusters inside this.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def connect(spec: str, *, timeout: float = 30.0) -> object:
    """A ``distributed.Client`` for ``spec``: ``"local:N"`` or a scheduler address.

    Parameters
    ----------
    spec : str
        ``"local:N"`` starts a ``distributed.LocalCluster`` of ``N`` worker
        processes sharing this machine's cores (``cpus // N`` threads each, no
        dashboard); anything else (``"tcp://scheduler:8786"``) is the address of a
        running scheduler.
    timeout : float, default=30.0
        Seconds to wait for a remote scheduler.

    Returns
    -------
    distributed.Client
        Closing it also closes the local cluster it started.

    Raises
    ------
    ValueError
        For a malformed ``"local:N"``.
    OSError
        When the scheduler cannot be reached.
    """
    from distributed import Client

    if spec.startswith("local"):
        _, _, count = spec.partition(":")
        try:
            n_workers = int(count)
        except ValueError:
            n_workers = 0
        if n_workers < 1:
            raise ValueError(f"--dask {spec}: expected local:N with N >= 1 workers, or a "
                             "scheduler address such as tcp://scheduler:8786")
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        with _environment_kept():
            # the client owns the cluster it starts: closing it closes the cluster
            return Client(n_workers=n_workers, threads_per_worker=threads, processes=True,
                          dashboard_address=None)
    try:
        return Client(spec, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise OSError(f"--dask {spec}: cannot reach the Dask scheduler: {exc}") from None


__all__ = ["ParallelPostFit", "connect"]
