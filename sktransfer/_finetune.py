"""FineTuneClassifier: fine-tune a pretrained CNN as a scikit-learn classifier (skorch inside).

Single-label (one class per image) and multi-label (a binary indicator matrix ``y``, as
scikit-learn's multilabel convention) classification.
"""

from __future__ import annotations

import os
from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from ._dask import is_dask_collection
from ._deployable import Deployable
from ._finetune_base import BaseFineTuner
from ._finetune_docs import fill_docstring
from ._losses import WeightedLoss
from ._training import sigmoid_views, softmax_views
from ._validation import Numbers, StrOptions
from .backbones import DEFAULT_MODEL


@fill_docstring
class FineTuneClassifier(ClassifierMixin, BaseFineTuner):
    """Fine-tune a pretrained CNN: new head, chosen unfreeze depth, layer-wise learning rates.

    The pretrained classifier is replaced by a linear head sized to the classes of ``y``.
    ``unfreeze`` picks the strategy: ``0`` trains the head only (the frozen-base strategy),
    ``k`` also trains the top ``k`` layer groups, ``"all"`` trains everything; so
    ``GridSearchCV(FineTuneClassifier(), {"unfreeze": [0, 1, 2, "all"]})`` chooses it.
    The head trains at ``lr`` and lower groups at geometrically lower rates (``lr_decay``),
    all following a per-batch schedule. BatchNorm layers normalise with their pretrained
    statistics throughout (``batchnorm``), so fine-tuning deep on small data unlike the
    pretraining data does not collapse.

    ``y`` is either one label per image (strings work; softmax head, cross-entropy) or a
    2-D binary indicator matrix of shape ``(n_samples, n_labels)`` for multi-label
    classification (sigmoid outputs, binary cross-entropy; ``predict`` returns the
    indicator matrix, ``predict_proba`` the probability of each label).

    Parameters
    ----------
    %(shared_parameters)s
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn: ``"balanced"`` weighs
        each class by ``n_samples / (n_classes * count)``; a dict maps labels to weights
        (missing labels weigh 1). Single-label ``y`` only.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy loss, in [0, 1). Single-label ``y`` only.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; for multi-label ``y``, the label indices ``0..n_labels-1``.
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix.
    %(shared_attributes)s

    See Also
    --------
    PretrainedFeatureExtractor : Frozen features for any scikit-learn model (the cheapest
        strategy).
    FineTuneRegressor : The same for continuous targets.

    Notes
    -----
    %(shared_notes)s

    Examples
    --------
    Random weights (``weights=None``) and random images keep this quick; keep the default
    ``weights="DEFAULT"`` for ImageNet weights.

    >>> import numpy as np
    >>> from sktransfer import FineTuneClassifier
    >>> X = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    >>> y = np.array(["cat", "dog"] * 8)
    >>> clf = FineTuneClassifier("resnet18", weights=None, unfreeze=1, max_epochs=2,
    ...                          image_size=32, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    >>> [(row["group"], row["trainable"]) for row in clf.summary()][-3:]
    [('layer3', False), ('layer4', True), ('head', True)]
    >>> clf.fit_cost_.n_images
    32
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
        class_weight: dict | str | None = None,
        label_smoothing: float = 0.0,
    ):
        self._store_params(locals())

    _parameter_constraints: dict = {
        **BaseFineTuner._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Numbers(Real, 0, 1, closed="left")],
    }

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities (rows sum to 1), or per-label probabilities (multi-label).

        With ``tta``, the average over the test-time views.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float32
            Columns in the order of ``classes_``. A lazy ``dask.array.Array`` for a Dask
            collection ``X``.
        """
        return self._predict_outputs(X)

    def predict(self, X: object) -> np.ndarray:
        """Predicted class labels, or the label indicator matrix (multi-label).

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_`` (in the type of ``y``), or 0/1 per label. A lazy
            ``dask.array.Array`` for a Dask collection ``X``.
        """
        if is_dask_collection(X):
            check_is_fitted(self, "net_")
            return self._lazy(X, "predict")
        proba = self.predict_proba(X)  # checks that the estimator is fitted
        if self.multilabel_:
            return (proba >= 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]

    def _output_meta(self, method: str) -> np.ndarray:
        """An empty array shaped and typed like ``method``'s output (for Dask)."""
        if method == "predict_proba":
            return np.empty((0, len(self.classes_)), dtype=np.float32)
        if self.multilabel_:
            return np.empty((0, len(self.classes_)), dtype=np.int64)
        return np.empty(0, dtype=self.classes_.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # ------------------------------------------------------------------ targets
    def _encode_targets(self, y: object, n_samples: int) -> tuple[np.ndarray, dict]:
        if y is None:
            raise ValueError("FineTuneClassifier needs labels y")
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y)
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} images but y has {len(y)} labels")
        if y.ndim == 2:
            return self._encode_multilabel(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D labels or a 2-D label indicator matrix, got "
                             f"shape {y.shape}")
        missing = [i for i, v in enumerate(y) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise ValueError(f"y[{missing[0]}] is missing (None/NaN); every image needs a label")
        try:
            encoder = LabelEncoder().fit(y)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in y})
            raise ValueError(f"y mixes label types {kinds}; use one type") from None
        check_classification_targets(y)  # continuous floats are not labels
        classes = encoder.classes_
        if len(classes) < 2:
            raise ValueError(f"y has a single class '{classes[0]}'; need at least 2")
        encoded = encoder.transform(y).astype(np.int64)
        return encoded, {"classes_": classes, "multilabel_": False}

    def _encode_multilabel(self, y: np.ndarray) -> tuple[np.ndarray, dict]:
        bad = np.argwhere(~np.isin(y, [0, 1])) if y.dtype.kind in "biuf" else []
        if len(bad) or type_of_target(y) != "multilabel-indicator":
            where = f"; y[{bad[0][0]}, {bad[0][1]}] is {y[tuple(bad[0])].item()!r}" if len(
                bad) else ""
            raise ValueError("a 2-D y must be a binary label indicator matrix (0/1 per "
                             f"image and label){where}")
        if self.class_weight is not None:
            raise ValueError("class_weight applies to single-label y; for multi-label y "
                             "pass sample_weight")
        if self.label_smoothing:
            raise ValueError("label_smoothing applies to single-label y")
        targets = y.astype(np.float32)
        return targets, {"classes_": np.arange(y.shape[1]), "multilabel_": True}

    def _example_weights(self, targets: np.ndarray, info: dict) -> np.ndarray | None:
        if self.class_weight is None or info["multilabel_"]:
            return None
        classes = info["classes_"]
        if isinstance(self.class_weight, dict):
            unknown = [k for k in self.class_weight if k not in set(classes.tolist())]
            if unknown:
                raise ValueError(f"class_weight names labels {unknown} that are not in y "
                                 f"(classes: {classes.tolist()})")
        weights = compute_class_weight(self.class_weight, classes=classes, y=classes[targets])
        return weights[targets]

    def _stratify(self, targets: np.ndarray) -> np.ndarray | None:
        return None if targets.ndim == 2 else targets

    def _n_outputs(self, info: dict) -> int:
        return len(info["classes_"])

    def _loss(self, info: dict) -> WeightedLoss:
        if info["multilabel_"]:
            return WeightedLoss("bce")
        return WeightedLoss("cross_entropy", float(self.label_smoothing))

    def _output(self, info: dict):
        return sigmoid_views if info["multilabel_"] else softmax_views

    # ------------------------------------------------------------------ deployment
    def _deployable(self, network: nn.Module) -> Deployable:
        task = "multilabel" if self.multilabel_ else "classifier"
        return Deployable(network, task, self.preprocessing_, self.classes_)

    # ------------------------------------------------------------------ exchange
    def _fitted_targets(self) -> dict:
        """Fitted target attributes as JSON (see :mod:`sktransfer.exchange`)."""
        return {"classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str,
                "multilabel": bool(self.multilabel_)}

    @staticmethod
    def _target_info(fitted: dict) -> dict:
        classes = np.array(fitted["classes"], dtype=np.dtype(fitted["classes_dtype"]))
        return {"classes_": classes, "multilabel_": bool(fitted.get("multilabel", False))}
