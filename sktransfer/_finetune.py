"""FineTuneClassifier: fine-tune a pretrained CNN as a scikit-learn classifier (skorch inside).

Single-label (one class per image) and multi-label (a binary indicator matrix ``y``, as
scikit-learn's multilabel convention) classification.
"""

from __future__ import annotations

import os
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from ._calibration import Calibrated, calibrate, fit_temperature
from ._cost import inference_flops
from ._dask import is_dask_collection
from ._deployable import Deployable
from ._finetune_base import BaseFineTuner
from ._finetune_docs import fill_docstring
from ._losses import DistillationLoss, WeightedLoss
from ._reject import (
    NOVELTY_SCORES,
    Rejector,
    check_reject_label,
    label_array,
    outputs_and_features,
)
from ._training import SoftmaxPerTask, sigmoid_views, softmax_views, tta_views
from ._unlabelled import labelled_values, unlabelled_mask
from ._validation import Numbers, StrOptions, options
from .backbones import DEFAULT_MODEL
from .images import as_image_source

# The parameters of calibration and rejection (FineTuneClassifier and its subclasses).
TRUST_CONSTRAINTS: dict = {
    "calibration": [StrOptions({"auto", "temperature"}), None],
    "reject_label": "no_validation",
    "novelty": [options(NOVELTY_SCORES)],
    "keep_rate": [Numbers(Real, 0, 1, closed="right")],
}


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

    ``y`` is one label per image (strings work; softmax head, cross-entropy), a 2-D
    binary indicator matrix of shape ``(n_samples, n_labels)`` for multi-label
    classification (0/1 only; sigmoid outputs, binary cross-entropy; ``predict`` returns
    the indicator matrix, ``predict_proba`` the probability of each label), or a 2-D
    array of labels of shape ``(n_samples, n_outputs)`` for several tasks at once
    (scikit-learn's multiclass-multioutput, e.g. species and colour): one shared
    backbone, one softmax head per column, their cross-entropies summed (weighted by
    ``task_weights``); a missing label in a column (``-1``, None or NaN) leaves out only
    that column's loss. Then ``predict`` returns ``(n_samples, n_outputs)``,
    ``predict_proba`` and ``decision_function`` a list with one array per column (as
    scikit-learn's multi-output estimators), ``classes_`` a list of arrays, and
    ``score`` the mean over columns of each column's accuracy.

    Parameters
    ----------
    %(shared_parameters)s
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn: ``"balanced"`` weighs
        each class by ``n_samples / (n_classes * count)``; a dict maps labels to weights
        (missing labels weigh 1). Single-label ``y`` only.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy loss, in [0, 1). Single-label ``y`` only.
    %(trust_parameters)s
    task_weights : array-like of shape (n_outputs,) or None, default=None
        Weights of the columns' losses for multi-output ``y``; None weighs them equally.
    teacher : classifier or None, default=None
        Knowledge distillation (Hinton et al. 2015): a fitted classifier with
        ``predict_proba`` (a big fine-tuned model, a frozen-features pipeline, a search)
        whose probabilities this model learns too. The loss of a labelled image is
        ``(1 - distill_weight) * cross_entropy + distill_weight * T**2 * KL(teacher ||
        student)`` with both distributions softened by ``T = distill_temperature``; an
        image without a label (``-1``, None or NaN in ``y``) learns from the teacher
        alone, so unlabelled images can be added. ``classes_`` are the teacher's. The
        teacher's probabilities are computed once per training image, on the image as
        given (with ``augment``, the student sees augmented views against the clean
        image's probabilities). It is a parameter, so a joblib file of the student holds
        the teacher too: ``set_params(teacher=None)`` before saving (predicting does not
        need it); the pickle-free export leaves it out.
    distill_temperature : float, default=2.0
        The softening temperature ``T`` of distillation.
    distill_weight : float, default=0.5
        The share of the distillation term in the loss of a labelled image, in [0, 1].

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,) or list of ndarray
        Class labels; for multi-label ``y``, the label indices ``0..n_labels-1``; for
        multi-output ``y``, one array per column.
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix.
    multioutput_ : bool
        Whether ``y`` had one task per column (multi-output).
    inference_flops_ : dict
        With a ``teacher``: forward FLOPs per image of this model (``"student"``) and of
        the teacher (``"teacher"``; None where they cannot be counted), side by side.
    %(trust_attributes)s
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
        adapter: str | None = None,
        adapter_rank: int = 8,
        adapter_alpha: float = 8.0,
        adapter_targets: list | None = None,
        adapter_merge: bool = True,
        class_weight: dict | str | None = None,
        label_smoothing: float = 0.0,
        calibration: str | None = "auto",
        reject_label: object = None,
        novelty: str = "mahalanobis",
        keep_rate: float = 0.95,
        task_weights: list | None = None,
        teacher: object = None,
        distill_temperature: float = 2.0,
        distill_weight: float = 0.5,
    ):
        self._store_params(locals())

    _parameter_constraints: dict = {
        **BaseFineTuner._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Numbers(Real, 0, 1, closed="left")],
        **TRUST_CONSTRAINTS,
        "task_weights": ["array-like", None],
        "teacher": [HasMethods(["predict_proba"]), None],
        "distill_temperature": [Numbers(Real, 0, None, closed="neither")],
        "distill_weight": [Numbers(Real, 0, 1, closed="both")],
    }
    # calibration and the reject threshold come after training: a checkpoint's epochs are
    # the same whatever they say
    _VOLATILE = BaseFineTuner._VOLATILE | set(TRUST_CONSTRAINTS)

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities (rows sum to 1), or per-label probabilities (multi-label).

        Calibrated by ``temperature_`` (see ``calibration``). With ``tta``, the average
        over the test-time views (calibrated as a whole: the temperature never changes
        which class is most probable).

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
        if is_dask_collection(X):
            check_is_fitted(self, "net_")
            return self._lazy(X, "predict_proba")
        proba = calibrate(self._predict_outputs(X), self._temperature(), self.multilabel_)
        if self._multioutput():
            return self._per_task(proba)
        return proba

    def decision_function(self, X: object) -> np.ndarray:
        """The network's logits, divided by ``temperature_``.

        ``softmax`` of these (``sigmoid`` for multi-label) is :meth:`predict_proba`
        without test-time augmentation; with ``tta`` the logits are averaged over the
        views. This is what ``CalibratedClassifierCV(FrozenEstimator(clf))`` calibrates.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes), dtype float32
            For two classes, as in scikit-learn, one column: the logit of ``classes_[1]``
            minus that of ``classes_[0]`` (positive: ``classes_[1]``); otherwise one
            column per class (per label for multi-label ``y``). A lazy
            ``dask.array.Array`` for a Dask collection ``X``.
        """
        if is_dask_collection(X):
            check_is_fitted(self, "net_")
            return self._lazy(X, "decision_function")
        outputs, _ = self._outputs(X, features=False)
        logits = (outputs.mean(1) if outputs.ndim == 3 else outputs).numpy()
        logits = (logits / self._temperature()).astype(np.float32)
        if self._multioutput():
            return self._per_task(logits)
        if not self.multilabel_ and logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict(self, X: object) -> np.ndarray:
        """Predicted class labels, or the label indicator matrix (multi-label).

        With ``reject_label`` set, images less typical of the training images than the
        fitted threshold get ``reject_label`` instead of a class.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_`` (in the type of ``y``) or ``reject_label``, or 0/1
            per label. A lazy ``dask.array.Array`` for a Dask collection ``X``.
        """
        if is_dask_collection(X):
            check_is_fitted(self, "net_")
            return self._lazy(X, "predict")
        return self._predict_and_proba(X)[0]

    def _predict_and_proba(self, X: object) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and :meth:`predict_proba` from one pass over ``X`` (the
        command line writes both)."""
        check_is_fitted(self, "net_")
        rejector = self._active_rejector()
        if rejector is None:
            proba = self.predict_proba(X)
        else:
            outputs, features = self._outputs(X)
            proba = calibrate(self.net_.predict_nonlinearity(outputs).numpy(),
                              self._temperature(), self.multilabel_)
        if self.multilabel_:
            return (proba >= 0.5).astype(np.int64), proba
        if self._multioutput():
            columns = [c[np.argmax(p, axis=1)] for c, p in zip(self.classes_, proba,
                                                                 strict=True)]
            return _stack_columns(columns), proba
        best = np.argmax(proba, axis=1)
        if rejector is None:
            return self.classes_[best], proba
        novel = rejector.decision(features, outputs.numpy()) < 0
        labels = label_array(self.classes_, self.reject_label)
        return labels[np.where(novel, len(self.classes_), best)], proba

    def typicality(self, X: object) -> np.ndarray:
        """How typical each image is of the training images, minus the fitted threshold.

        The score ``reject_label`` uses (``novelty``): negative for the images
        :meth:`predict` rejects. About ``keep_rate`` of images like the training images
        score 0 or more.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`.

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
            Higher is more typical. A lazy ``dask.array.Array`` for a Dask collection
            ``X``.
        """
        check_is_fitted(self, "net_")
        if is_dask_collection(X):
            self._active_rejector()  # its errors now, not in a worker
            return self._lazy(X, "typicality")
        rejector = self._active_rejector()
        if rejector is None:
            raise ValueError("typicality needs the novelty threshold that fit learns when "
                             "reject_label is set; refit with reject_label=... (e.g. -1)")
        outputs, features = self._outputs(X)
        return rejector.decision(features, outputs.numpy())

    def _outputs(self, X: object, features: bool = True
                 ) -> tuple[torch.Tensor, np.ndarray | None]:
        """The raw outputs ((N, C), or (N, V, C) with ``tta``) and, with ``features``, the
        head's inputs."""
        self._check_tta()
        return self._pass(as_image_source(X), views=tta_views(self.tta), features=features)

    def __sklearn_clone__(self) -> FineTuneClassifier:
        """A clone with the same, fitted, teacher (scikit-learn would clone it unfitted:
        a teacher is used, never refitted, so searches and cross-validation share it)."""
        from sklearn.base import clone

        params = self.get_params(deep=False)
        return type(self)(**{k: v if k == "teacher" else clone(v, safe=False)
                             for k, v in params.items()})

    _NO_LABEL_HINT = ""  # what score's error adds (domain adaptation: its target rows)

    def _teacher(self):
        """The distillation teacher (subclasses without the parameter have none)."""
        return getattr(self, "teacher", None)

    def _multioutput(self) -> bool:
        return bool(getattr(self, "multioutput_", False))

    def _per_task(self, values: np.ndarray) -> list[np.ndarray]:
        """Side-by-side columns of every task, split into one array per task."""
        bounds = np.cumsum([len(c) for c in self.classes_])[:-1]
        return np.split(values, bounds, axis=1)

    def score(self, X: object, y: object, sample_weight: object = None) -> float:
        """Mean accuracy (multi-output ``y``: the mean of the columns' accuracies).

        For multi-output ``y``, each column's accuracy leaves out the rows whose label
        in that column is missing, and a column without any label is left out of the
        mean.

        Parameters
        ----------
        X : images
            Images, as for :meth:`predict`.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels (a label indicator matrix for multi-label ``y``: subset
            accuracy, as scikit-learn's).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        score : float
            The accuracy.
        """
        from sklearn.metrics import accuracy_score

        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if not self._multioutput():
            if y.ndim != 1 or self.multilabel_:
                return super().score(X, y, sample_weight)
            # rows without a label (a teacher's pool) say nothing: left out, unless the
            # marker is a class of the model
            keep = ~unlabelled_mask(y) | np.isin(y, self.classes_)
            if not keep.any():
                raise ValueError(f"y has no labelled rows to score{self._NO_LABEL_HINT}")
            rows = X if keep.all() else as_image_source(X).subset(
                np.flatnonzero(keep).tolist())
            weights = None if sample_weight is None else np.asarray(sample_weight)[keep]
            return float(accuracy_score(labelled_values(y[keep]), self.predict(rows),
                                        sample_weight=weights))
        predicted = self.predict(X)
        if y.shape != predicted.shape:
            raise ValueError(f"y has shape {y.shape}; this model predicts "
                             f"{predicted.shape[1]} target columns")
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        scores = []
        for j in range(y.shape[1]):
            column = y[:, j]
            keep = ~unlabelled_mask(column)
            if not keep.any():  # no label in this column: it says nothing
                continue
            scores.append(accuracy_score(
                labelled_values(column[keep]), labelled_values(predicted[keep, j]),
                sample_weight=None if weights is None else weights[keep]))
        if not scores:
            raise ValueError("y has no label in any column to score")
        return float(np.mean(scores))

    def _temperature(self) -> float:
        """The fitted temperature; 1 with ``calibration=None`` (which switches it off at
        predict time too) and for models fitted before calibration existed."""
        if self.calibration is None:
            return 1.0
        return float(getattr(self, "temperature_", 1.0))

    def _active_rejector(self) -> Rejector | None:
        """The fitted reject threshold, when ``reject_label`` asks for it."""
        rejector = getattr(self, "_rejector", None)
        if self.reject_label is None:
            return None
        if rejector is None:
            raise ValueError(f"reject_label={self.reject_label!r} but no novelty threshold "
                             "was fitted (reject_label was set after fit, or fit did not "
                             "finish); refit, or set reject_label=None")
        check_reject_label(self.reject_label, self.classes_)  # it may have changed
        changed = [f"{name}={getattr(self, name)!r}" for name, fitted in
                   (("novelty", rejector.method), ("keep_rate", rejector.keep_rate))
                   if fitted is not None and getattr(self, name) != fitted]
        if changed:
            raise ValueError(f"{', '.join(changed)} changed after fit, but the novelty "
                             f"threshold was fitted with novelty={rejector.method!r}, "
                             f"keep_rate={rejector.keep_rate!r}; refit")
        return rejector

    def _output_meta(self, method: str) -> np.ndarray:
        """An empty array shaped and typed like ``method``'s output (for Dask)."""
        if self._multioutput():
            if method != "predict":
                raise TypeError(f"{method} of a multi-output classifier is one array per "
                                "target column, which a Dask array cannot hold; compute "
                                "it per partition, or use predict")
            return np.empty((0, len(self.classes_)), dtype=_stack_columns(
                [c[:0] for c in self.classes_]).dtype)
        n = len(self.classes_)
        if method == "predict_proba":
            return np.empty((0, n), dtype=np.float32)
        if method == "decision_function":
            shape = (0,) if n == 2 and not self.multilabel_ else (0, n)
            return np.empty(shape, dtype=np.float32)
        if method == "typicality":
            return np.empty(0, dtype=np.float64)
        if self.multilabel_:
            return np.empty((0, n), dtype=np.int64)
        if self.reject_label is not None:
            return np.empty(0, dtype=label_array(self.classes_, self.reject_label).dtype)
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
        if self._teacher() is not None:  # one label per image (its own check)
            return self._encode_for_teacher(y)
        if y.ndim == 2:
            if _is_indicator(y):
                return self._encode_multilabel(y)
            return self._encode_multioutput(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D labels, a 2-D label indicator matrix or 2-D "
                             f"labels (one task per column), got "
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
        check_reject_label(self.reject_label, classes)
        if getattr(self, "task_weights", None) is not None:
            raise ValueError("task_weights applies to multi-output y (one task per "
                             "column); y has one label per image")
        encoded = encoder.transform(y).astype(np.int64)
        return encoded, {"classes_": classes, "multilabel_": False, "multioutput_": False}

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
        if self.reject_label is not None:
            raise ValueError("reject_label applies to single-label y (predict returns a "
                             "0/1 matrix for multi-label y, with no place for it)")
        targets = y.astype(np.float32)
        return targets, {"classes_": np.arange(y.shape[1]), "multilabel_": True,
                         "multioutput_": False}

    def _encode_for_teacher(self, y: np.ndarray) -> tuple[np.ndarray, dict]:
        """Labels as indices into the teacher's classes (the student learns those);
        ``-1`` for rows without a label (``-1``, None or NaN), which learn from the
        teacher alone."""
        classes = getattr(self.teacher, "classes_", None)
        if classes is None:
            raise ValueError(f"teacher {type(self.teacher).__name__} is not fitted (it has "
                             "no classes_); fit it first")
        classes = np.asarray(classes)
        if classes.ndim != 1 or getattr(self.teacher, "multilabel_", False) or \
                getattr(self.teacher, "multioutput_", False):
            raise ValueError("a teacher must be a single-label classifier (one class per "
                             "image)")
        if y.ndim != 1:
            raise ValueError(f"with a teacher, y must be 1-D labels, got shape {y.shape}")
        unlabelled = unlabelled_mask(y)
        labels = labelled_values(y[~unlabelled])
        position = {c: i for i, c in enumerate(classes.tolist())}
        unknown = sorted({v for v in labels.tolist() if v not in position}, key=str)
        if unknown:
            raise ValueError(f"y has labels {unknown[:5]} that are not classes of the "
                             f"teacher {classes.tolist()}")
        check_reject_label(self.reject_label, classes)
        encoded = np.full(len(y), -1, dtype=np.int64)
        encoded[~unlabelled] = [position[v] for v in labels.tolist()]
        return encoded, {"classes_": classes, "multilabel_": False, "multioutput_": False}

    def _training_extras(self, X: object, source, targets: np.ndarray,
                         info: dict) -> dict[str, np.ndarray] | None:
        """The teacher's probabilities of every training image, computed once (on the
        images as given: with ``augment`` the student sees augmented views of them)."""
        if self._teacher() is None:
            return None
        proba = np.asarray(self.teacher.predict_proba(X), dtype=np.float32)
        if proba.shape != (len(source), len(info["classes_"])):
            raise ValueError(f"the teacher's predict_proba returned shape {proba.shape}, "
                             f"expected ({len(source)}, {len(info['classes_'])})")
        return {"teacher": proba}

    def _encode_multioutput(self, y: np.ndarray) -> tuple[np.ndarray, dict]:
        """Multiclass-multioutput ``y`` (one task per column): class indices per column,
        ``-1`` where a column has no label (``-1``, None or NaN)."""
        for name, value in (("class_weight", self.class_weight),
                            ("reject_label", self.reject_label)):
            if value is not None:
                raise ValueError(f"{name} applies to single-label y; y has {y.shape[1]} "
                                 "target columns (multi-output)")
        if self.calibration == "temperature":
            raise ValueError("calibration='temperature' applies to single-label and "
                             "multi-label y, not to multi-output y")
        if self.task_weights is not None:
            weights = np.asarray(self.task_weights, dtype=float)
            if weights.shape != (y.shape[1],):
                raise ValueError(f"task_weights has {weights.size} weights but y has "
                                 f"{y.shape[1]} target columns")
            if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum()):
                raise ValueError(f"task_weights must be non-negative and not all 0, got "
                                 f"{weights.tolist()}")
        encoded = np.full(y.shape, -1, dtype=np.int64)
        classes = []
        for j in range(y.shape[1]):
            column = y[:, j]
            missing = unlabelled_mask(column)
            values = labelled_values(column[~missing])
            if values.dtype.kind == "f" and not np.all(values == np.round(values)):
                raise ValueError(f"y[:, {j}] holds continuous values (e.g. "
                                 f"{values[values != np.round(values)][0].item()!r}), not class "
                                 "labels; a 2-D y is a 0/1 label indicator matrix or one "
                                 "set of class labels per column")
            if len(np.unique(values)) < 2:
                raise ValueError(f"y[:, {j}] has {len(np.unique(values))} class(es) among "
                                 "its labelled rows; every target column needs at least 2")
            try:
                encoder = LabelEncoder().fit(values)
            except TypeError:
                kinds = sorted({type(v).__name__ for v in values})
                raise ValueError(f"y[:, {j}] mixes label types {kinds}; use one type per "
                                 "column") from None
            check_classification_targets(values)
            encoded[~missing, j] = encoder.transform(values)
            classes.append(encoder.classes_)
        if (encoded < 0).all(axis=1).any():
            row = int(np.flatnonzero((encoded < 0).all(axis=1))[0])
            raise ValueError(f"y[{row}] has no label in any column; every image needs at "
                             "least one")
        return encoded, {"classes_": classes, "multilabel_": False, "multioutput_": True}

    def _example_weights(self, targets: np.ndarray, info: dict) -> np.ndarray | None:
        if self.class_weight is None or info["multilabel_"] or info.get("multioutput_"):
            return None
        labelled = targets >= 0
        if not labelled.all():  # rows learning from a teacher alone weigh 1
            weights = np.ones(len(targets))
            weights[labelled] = self._example_weights(targets[labelled], info)
            return weights
        classes = info["classes_"]
        if isinstance(self.class_weight, dict):
            unknown = [k for k in self.class_weight if k not in set(classes.tolist())]
            if unknown:
                raise ValueError(f"class_weight names labels {unknown} that are not in y "
                                 f"(classes: {classes.tolist()})")
        present = np.unique(targets)  # a teacher's class may have no labelled row
        weights = np.ones(len(classes))
        weights[present] = compute_class_weight(self.class_weight, classes=classes[present],
                                                y=classes[targets])
        return weights[targets]

    def _stratify(self, targets: np.ndarray) -> np.ndarray | None:
        return None if targets.ndim == 2 else targets

    def _split(self, targets: np.ndarray, seed: int, idx: np.ndarray | None = None):
        if targets.ndim == 2 or idx is not None or not (targets < 0).any():
            return super()._split(targets, seed, idx)
        # validation holds labelled rows only; every unlabelled row trains
        labelled = np.flatnonzero(targets >= 0)
        if self.validation_fraction and not len(labelled):
            raise ValueError(f"validation_fraction={self.validation_fraction} holds out "
                             "labelled images, but no row of y has a label; set "
                             "validation_fraction=0")
        train, valid = super()._split(targets, seed, labelled)
        return np.concatenate([train, np.flatnonzero(targets < 0)]), valid

    def _n_outputs(self, info: dict) -> int:
        if info.get("multioutput_"):
            return sum(len(c) for c in info["classes_"])
        return len(info["classes_"])

    def _loss(self, info: dict) -> WeightedLoss:
        if info["multilabel_"]:
            return WeightedLoss("bce")
        if info.get("multioutput_"):
            k = len(info["classes_"])
            weights = (1.0,) * k if self.task_weights is None else tuple(
                float(w) for w in self.task_weights)
            return WeightedLoss("multitask", float(self.label_smoothing),
                                tuple(len(c) for c in info["classes_"]), weights)
        if self._teacher() is not None:
            return DistillationLoss(float(self.distill_temperature),
                                    float(self.distill_weight), float(self.label_smoothing))
        return WeightedLoss("cross_entropy", float(self.label_smoothing))

    def _output(self, info: dict):
        if info.get("multioutput_"):
            return SoftmaxPerTask(tuple(len(c) for c in info["classes_"]))
        return sigmoid_views if info["multilabel_"] else softmax_views

    # ------------------------------------------------------------------ trust
    def _check_params(self) -> None:
        if self.calibration == "temperature" and not self.validation_fraction:
            raise ValueError("calibration='temperature' fits the temperature on the "
                             "validation split, but validation_fraction=0; set "
                             "validation_fraction (e.g. 0.2), or calibration='auto' to "
                             "calibrate only when there is one")
        super()._check_params()

    def _set_fitted(self, *args, **kwargs) -> None:
        super()._set_fitted(*args, **kwargs)
        self.temperature_ = 1.0  # until the held-out images set it (not after a Ctrl-C)
        self._rejector = None
        self.__dict__.pop("inference_flops_", None)  # a fit with a teacher sets it

    def _fit_from_network(self, source, targets: np.ndarray, weights: np.ndarray | None,
                          train_idx: np.ndarray, valid_idx: np.ndarray | None) -> None:
        """The temperature, on the validation images' logits (``calibration``), and the
        reject threshold, on the training images' embeddings (``reject_label``)."""
        if valid_idx is not None and targets.ndim == 1:  # labelled rows only
            valid_idx = np.asarray(valid_idx)[targets[valid_idx] >= 0]
        if self.calibration is not None and valid_idx is not None and len(valid_idx) and \
                not self._multioutput():
            logits = self._pass(source, valid_idx, features=False)[0].numpy()
            # Laplace-smoothed targets: a small validation set classified without a
            # mistake must not drive the temperature to 0 (see fit_temperature)
            self.temperature_ = fit_temperature(
                logits, targets[valid_idx], None if weights is None else weights[valid_idx],
                self.multilabel_, smoothing=None)
        if self._teacher() is not None:
            self.inference_flops_ = {"student": inference_flops(self),
                                     "teacher": inference_flops(self.teacher)}
        if self.reject_label is not None:
            rows = np.asarray(train_idx)
            outputs, features = self._pass(source, rows)
            logits = outputs.numpy()
            labels = targets[rows].copy()
            # unlabelled rows (domain adaptation's target images, the kind it will
            # predict) count with the class the network gives them
            unlabelled = labels < 0
            labels[unlabelled] = logits[unlabelled].argmax(axis=1)
            self._rejector = Rejector.fit(self.novelty, float(self.keep_rate), features,
                                          logits, labels)

    def _pass(self, source, rows: np.ndarray | None = None, views=None,
              features: bool = True) -> tuple[torch.Tensor, np.ndarray | None]:
        """One pass of the fitted net over ``source``'s ``rows`` (all when None; no
        augmentation): its raw outputs and, with ``features``, the head's inputs, views
        averaged."""
        dataset = self._dataset(source, self.preprocessing_, indices=rows, views=views)
        with self._predicting():
            return outputs_and_features(self.net_, dataset, features)

    def __setstate__(self, state: dict) -> None:
        if "net_" in state:  # fitted before calibration and reject labels existed
            state.setdefault("temperature_", 1.0)
            state.setdefault("_rejector", None)
            state.setdefault("multioutput_", False)
        super().__setstate__(state)

    # ------------------------------------------------------------------ deployment
    def _deployable(self, network: nn.Module) -> Deployable:
        if self._active_rejector() is not None:
            raise ValueError(
                f"reject_label={self.reject_label!r}: export_onnx does not carry the "
                "novelty threshold yet, so the graph would never reject; export a copy "
                "with reject_label=None (clf.set_params(reject_label=None)) and reject "
                "in the app, or keep the model in joblib/safetensors")
        if self._multioutput():
            raise ValueError("export_onnx does not write multi-output classifiers (one "
                             "set of classes per target column) yet; keep the model in "
                             "joblib or the safetensors exchange")
        task = "multilabel" if self.multilabel_ else "classifier"
        if self._temperature() != 1.0:
            network = Calibrated(network, self._temperature(), self.multilabel_)
        return Deployable(network, task, self.preprocessing_, self.classes_)

    # ------------------------------------------------------------------ exchange
    def _fitted_targets(self) -> dict:
        """Fitted target attributes as JSON (see :mod:`sktransfer.exchange`); arrays under
        ``"_arrays"``."""
        if self._multioutput():
            fitted = {"classes": [c.tolist() for c in self.classes_],
                      "classes_dtype": [c.dtype.str for c in self.classes_],
                      "multilabel": False, "multioutput": True,
                      "temperature": float(getattr(self, "temperature_", 1.0))}
        else:
            fitted = {"classes": self.classes_.tolist(),
                      "classes_dtype": self.classes_.dtype.str,
                      "multilabel": bool(self.multilabel_),
                      "temperature": float(getattr(self, "temperature_", 1.0))}
        rejector = getattr(self, "_rejector", None)
        if rejector is not None:
            fitted["reject"], fitted["_arrays"] = rejector.state()
        return fitted

    @staticmethod
    def _target_info(fitted: dict) -> dict:
        if fitted.get("multioutput"):
            classes = [np.array(c, dtype=np.dtype(d)) for c, d in
                       zip(fitted["classes"], fitted["classes_dtype"], strict=True)]
            return {"classes_": classes, "multilabel_": False, "multioutput_": True}
        classes = np.array(fitted["classes"], dtype=np.dtype(fitted["classes_dtype"]))
        return {"classes_": classes, "multilabel_": bool(fitted.get("multilabel", False)),
                "multioutput_": False}

    def __sktransfer_restore__(self, backbone, state: dict, fitted: dict):
        super().__sktransfer_restore__(backbone, state, fitted)
        self.temperature_ = float(fitted.get("temperature", 1.0))
        if "reject" in fitted:
            self._rejector = Rejector.from_state(fitted["reject"], fitted.get("_arrays", {}))
        return self


def _is_indicator(y: np.ndarray) -> bool:
    """Whether 2-D ``y`` is a label indicator matrix (0/1 only: multi-label)."""
    if y.dtype.kind == "b":
        return True
    if y.dtype.kind not in "iuf":
        return False
    return bool(np.isin(y, [0, 1]).all())


def _stack_columns(columns: list[np.ndarray]) -> np.ndarray:
    """Per-column labels as one ``(n, k)`` array: their common dtype when the columns
    agree (all numbers, or all strings), else object (labels kept as they are)."""
    kinds = {c.dtype.kind for c in columns}
    if kinds <= set("iuf") or kinds == {"U"}:
        return np.stack(columns, axis=1)
    out = np.empty((len(columns[0]), len(columns)), dtype=object)
    for j, c in enumerate(columns):
        out[:, j] = list(c)
    return out
