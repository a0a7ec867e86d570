"""FineTuneRegressor: fine-tune a pretrained CNN to predict continuous targets."""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._dask import is_dask_collection
from ._deployable import Deployable, Linear
from ._finetune_base import BaseFineTuner
from ._finetune_docs import fill_docstring
from ._losses import WeightedLoss
from ._training import mean_views
from ._validation import options
from .backbones import DEFAULT_MODEL

LOSSES = ("mse", "huber")


@fill_docstring
class FineTuneRegressor(RegressorMixin, BaseFineTuner):
    """Fine-tune a pretrained CNN for continuous targets (one or several per image).

    The same estimator as :class:`FineTuneClassifier` (backbone, ``unfreeze`` depth,
    layer-wise rates, schedules, BatchNorm handling, checkpoints, export) with a linear
    head of one output per target. Targets are standardised inside (each column to mean
    0 and standard deviation 1 over the training data) and predictions are returned in
    the user's units; ``score`` is the coefficient of determination R^2.

    Parameters
    ----------
    %(shared_parameters)s
    loss : {"mse", "huber"}, default="mse"
        Squared error, or the Huber loss (quadratic within one standard deviation of the
        target, linear beyond: robust to outlying targets). Computed on standardised
        targets and averaged over them.

    Attributes
    ----------
    y_mean_, y_scale_ : ndarray of shape (n_targets,)
        Mean and standard deviation of each target column in the training data (a
        constant column has scale 1).
    n_targets_ : int
        Number of targets per image.
    target_names_ : ndarray of str or None
        Column names when ``y`` was a pandas DataFrame (or the Series name).
    %(shared_attributes)s

    See Also
    --------
    FineTuneClassifier : The same for class labels.
    PretrainedFeatureExtractor : Frozen features, e.g. for a ``RidgeCV`` on top.

    Notes
    -----
    %(shared_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import FineTuneRegressor
    >>> X = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    >>> y = X.mean(axis=(1, 2, 3))  # brightness, in grey levels
    >>> reg = FineTuneRegressor("resnet18", weights=None, max_epochs=2, image_size=32,
    ...                         random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        unfreeze: int | str = 0,
        lr: float | str = 1e-3,
        lr_decay: float | None = None,
        schedule: str = "onecycle",
        batchnorm: str = "frozen",
        freeze_epochs: int = 1,
        max_epochs: int = 10,
        batch_size: int = 32,
        optimizer: str = "adamw",
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.0,
        patience: int = 3,
        augment: bool | object = False,
        tta: bool | int = False,
        groups: list | dict | None = None,
        image_size: int | None = None,
        resize_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        device: str = "auto",
        precision: str = "auto",
        random_state: int | None = None,
        num_workers: int = 0,
        n_threads: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        callbacks: list | None = None,
        verbose: bool = False,
        adapter: str | None = None,
        adapter_rank: int = 8,
        adapter_alpha: float = 8.0,
        adapter_targets: list | None = None,
        adapter_merge: bool = True,
        loss: str = "mse",
    ):
        self._store_params(locals())

    _parameter_constraints: dict = {
        **BaseFineTuner._parameter_constraints,
        "loss": [options(LOSSES)],
    }

    def predict(self, X: object) -> np.ndarray:
        """Predicted targets, in the units of ``y``.

        With ``tta``, the average over the test-time views.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets), dtype float64
            1-D when ``y`` was 1-D. A lazy ``dask.array.Array`` for a Dask collection
            ``X``.
        """
        if is_dask_collection(X):
            check_is_fitted(self, "net_")
            return self._lazy(X, "predict")
        out = self._predict_outputs(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self.y_1d_ else out

    def _output_meta(self, method: str) -> np.ndarray:
        """An empty array shaped and typed like ``method``'s output (for Dask)."""
        return np.empty((0,) if self.y_1d_ else (0, self.n_targets_), dtype=np.float64)

    # ------------------------------------------------------------------ targets
    def _encode_targets(self, y: object, n_samples: int) -> tuple[np.ndarray, dict]:
        if y is None:
            raise ValueError("FineTuneRegressor needs targets y")
        names = None
        if hasattr(y, "columns"):
            names = np.asarray([str(c) for c in y.columns])
        elif getattr(y, "name", None) is not None:
            names = np.asarray([str(y.name)])
        raw = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if raw.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {raw.shape}")
        if len(raw) != n_samples:
            raise ValueError(f"X has {n_samples} images but y has {len(raw)} targets")
        try:
            values = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"y must hold numbers, got dtype {raw.dtype}") from None
        one_d = values.ndim == 1
        values = values.reshape(len(values), -1)
        if values.shape[1] == 0:
            raise ValueError("y has no target columns")
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            where = f"y[{bad[0][0]}]" if one_d else f"y[{bad[0][0]}, {bad[0][1]}]"
            raise ValueError(f"{where} is {values[tuple(bad[0])]}; targets must be finite")
        mean = values.mean(axis=0)
        scale = values.std(axis=0)
        scale[scale == 0] = 1.0
        targets = ((values - mean) / scale).astype(np.float32)
        return targets, {"y_mean_": mean, "y_scale_": scale, "n_targets_": values.shape[1],
                         "y_1d_": one_d, "target_names_": names}

    def _n_outputs(self, info: dict) -> int:
        return int(info["n_targets_"])

    def _loss(self, info: dict) -> WeightedLoss:
        return WeightedLoss(self.loss)

    def _output(self, info: dict):
        return mean_views

    # ------------------------------------------------------------------ deployment
    def _deployable(self, network: nn.Module) -> Deployable:
        network = Linear(network, None, self.y_scale_, self.y_mean_, squeeze=self.y_1d_)
        return Deployable(network, "regressor", self.preprocessing_)

    # ------------------------------------------------------------------ exchange
    def _fitted_targets(self) -> dict:
        """Fitted target attributes as JSON (see :mod:`sktransfer.exchange`)."""
        names = None if self.target_names_ is None else self.target_names_.tolist()
        return {"y_mean": self.y_mean_.tolist(), "y_scale": self.y_scale_.tolist(),
                "y_1d": bool(self.y_1d_), "target_names": names}

    @staticmethod
    def _target_info(fitted: dict) -> dict:
        mean = np.asarray(fitted["y_mean"], dtype=np.float64)
        names = fitted.get("target_names")
        return {"y_mean_": mean, "y_scale_": np.asarray(fitted["y_scale"], dtype=np.float64),
                "n_targets_": len(mean), "y_1d_": bool(fitted["y_1d"]),
                "target_names_": None if names is None else np.asarray(names)}
