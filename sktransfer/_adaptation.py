"""DomainAdaptationClassifier: fine-tune on labelled source images while adapting to
unlabelled target images (Deep CORAL, MCC or DANN, then source-matched AdaBN), with a
guard that compares the result with source-only training."""

from __future__ import annotations

import numbers
import os
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch.callbacks import PassthroughScoring
from torch import nn

from . import _runtime
from ._batchnorm import match_statistics, recalibrate
from ._domain import (
    ADAPTATION_METHODS,
    ADAPTATION_SCHEDULES,
    FEATURE_METHODS,
    AdaptationSchedule,
    DomainNet,
    DomainTransferNet,
    adapter_stats,
    domain_positions,
    make_adapter,
)
from ._finetune import FineTuneClassifier
from ._finetune_docs import fill_docstring
from ._signals import SIGNALS
from ._unlabelled import as_label_array, labelled_values, unlabelled_mask
from ._validation import POSITIVE, Numbers, options
from .backbones import DEFAULT_MODEL
from .errors import ImageInputError
from .images import ConcatSource, as_image_source, renamed

#: The guard's signal and margin, chosen on the shift-family study
#: (benchmarks/bench_adaptation_study.py; see the performance page).
GUARD_SIGNAL = "im"
GUARD_MARGIN = 0.1


class AdaptationCheck(NamedTuple):
    """What ``fit`` measured of its adaptation against source-only training
    (``DomainAdaptationClassifier.adaptation_check_``)."""

    signal: str
    """The unsupervised signal compared (see :mod:`sktransfer._signals`)."""
    adapted: float
    """Its value for the fitted (adapted) model on the unlabelled rows."""
    source_only: float
    """Its value for the same network fine-tuned on the labelled rows alone."""
    agreement: float
    """Share of unlabelled rows on which the two models predict the same class."""
    looks_harmful: bool
    """``adapted < source_only - margin``: adaptation looks worse than none."""
    margin: float
    """The margin of that rule (in the signal's units)."""


class _DomainInput(NamedTuple):
    """``fit``'s images with its ``X_target`` and ``sample_domain`` (resolved in
    ``_prepare``, where the other estimators read their images)."""

    X: object
    X_target: object
    sample_domain: object


# The training defaults that differ from FineTuneClassifier's: chosen for adaptation (an
# adaptation loss can only move layers that train, and needs the steps to do it).
_PARAMETERS = {
    "unfreeze": """unfreeze : int or "all", default="all"
        Number of top layer groups to train besides the head. ``"dann"`` and
        ``"coral"`` need at least 1 (their loss acts on the body's features).""",
    "lr_decay": """lr_decay : float or None, default=1.0
        Factor between the learning rates of consecutive groups, as for
        :class:`FineTuneClassifier`; 1.0 trains every group at ``lr`` (measured on the
        digit task: 0.65 target accuracy against 0.49 with ``None``'s spread).""",
    "freeze_epochs": """freeze_epochs : int, default=0
        Epochs that train the head alone before the ``unfreeze`` groups join.""",
    "max_epochs": """max_epochs : int, default=15
        Total epochs, both phases included.""",
    "calibration": """calibration : {"auto", "temperature"} or None, default=None
        Temperature scaling of the probabilities, as for :class:`FineTuneClassifier`,
        but off by default: the validation split holds labelled source images, and a
        temperature fitted on images of one domain miscalibrates another (measured with
        digits written by other people: the test log-loss rose, see the performance
        page). Set it when the target images are like the source ones.""",
}


@fill_docstring(parameters=_PARAMETERS)
class DomainAdaptationClassifier(FineTuneClassifier):
    """Fine-tune on labelled source images and adapt to unlabelled target images.

    Unsupervised domain adaptation: the labelled images (source) and the images the
    model must work on, for which there are no labels (target), differ in style (studio
    and phone photos, clean and noisy scans). Two things adapt the network to the
    target, and the defaults use both:

    - **an adaptation loss** on the target images, added to the classification loss on
      the source:

      - ``method="coral"`` (Deep CORAL, Sun & Saenko 2016; the default): the squared
        distance between the covariances of source and target features;
      - ``method="mcc"`` (minimum class confusion, Jin et al. 2020): the target
        predictions should not hesitate between classes, without rewarding a collapse
        onto one class as entropy minimisation does. It acts on the logits, so it
        trains the head too;
      - ``method="dann"`` (domain-adversarial training, Ganin & Lempitsky 2015): a
        domain head learns to tell source from target features, and a gradient
        reversal layer makes the network learn features it cannot tell apart;
      - ``"dann+mcc"``, ``"coral+mcc"``: both losses, summed.

    - **source-matched AdaBN** (``adabn=True``): after training, every BatchNorm
      layer's statistics are set so that it normalises the target images as it
      normalised the source images (Li et al. 2016's AdaBN, adapted to networks trained
      with frozen pretrained statistics; see
      :func:`~sktransfer._batchnorm.match_statistics`). Predictions are then meant for
      target-like images: on source images the model is less accurate.

    The defaults (every layer trained at one rate from the first epoch, 15 epochs,
    ``"coral"``, AdaBN) were chosen on a study of five shift families x 3 seeds (see the
    user guide and the performance page), where they beat fine-tuning on the source
    alone on every family and seed; most of the gain is AdaBN's.
    A setting where nothing can adapt is refused: ``"dann"`` and ``"coral"`` act on the
    body's features, so they need ``unfreeze`` > 0.

    **The guard.** No target label means no target score, so an adaptation that hurts
    would go unnoticed. With ``guard=True`` (the default) ``fit`` also fine-tunes the
    same network on the source alone (the fit costs about 1.6 times as much) and
    compares the two on the unlabelled rows with the information-maximisation signal
    (confident and diverse predictions; see :func:`sktransfer.information_maximization_scorer`):
    ``adaptation_check_`` records both values, and ``fit`` warns when the adapted model
    scores lower by more than the margin. It tracks target accuracy across settings and
    catches training that degrades the target predictions; it cannot see a target whose
    class proportions differ from the source's (a target holding only some of the
    classes), where alignment and AdaBN both hurt: the user guide shows the
    measurement.

    Everything else is :class:`FineTuneClassifier`'s: backbone and preprocessing,
    layer-wise rates, schedules, BatchNorm handling during training, checkpoints,
    export, joblib, Dask.

    **Where the target images go.** In ``X``, with their label marked unlabelled in
    ``y``: ``-1`` for numeric labels, ``None`` or NaN for object labels (scikit-learn's
    semi-supervised convention, as for ``SelfTrainingClassifier``). Pipelines and
    cross-validation then split source and target rows together. ``fit(X, y,
    X_target=...)`` appends target images for convenience, and ``sample_domain`` (skada's
    convention: positive for source rows, negative for target rows) marks target rows
    whose labels must be ignored. ``classes_`` never include the marker.

    **Training.** Each step takes up to ``batch_size`` labelled images and as many target
    images (so a step holds up to ``2 * batch_size`` images); an epoch is one pass over
    the labelled images, as for :class:`FineTuneClassifier`. The adaptation loss's
    weight rises from 0 to ``adaptation_weight`` along Ganin's schedule
    ``2 / (1 + exp(-gamma * p)) - 1`` of the training progress ``p``, or stays constant.
    ``net_.history`` records, per epoch, ``source_loss`` (classification),
    ``adaptation_weight`` and the method's own: ``domain_loss`` (DANN, CORAL),
    ``domain_acc`` (DANN: the domain head's accuracy; near 0.5 means the domains look
    alike to it), ``confusion_loss`` (MCC). With no unlabelled rows the fit warns and is
    plain fine-tuning.

    **Model selection.** ``score`` is the accuracy on the labelled rows, which are source
    rows: it measures the source domain, not the target. Early stopping and
    ``validation_fraction`` also watch the source loss. For an unsupervised criterion on
    target rows, use :func:`sktransfer.information_maximization_scorer` (the guard's
    signal) with ``GridSearchCV``.

    Parameters
    ----------
    %(shared_parameters)s
    class_weight : dict, "balanced" or None, default=None
        As for :class:`FineTuneClassifier`, over the labelled rows.
    label_smoothing : float, default=0.0
        As for :class:`FineTuneClassifier`.
    %(trust_parameters)s
    method : {"coral", "mcc", "dann", "dann+mcc", "coral+mcc"}, default="coral"
        The adaptation loss.
    adaptation_weight : float, default=1.0
        The adaptation loss's weight at the end of its ramp: DANN's gradient reversal
        coefficient (lambda), CORAL's and MCC's loss weight. 0 trains on the source
        alone (the target images still pass through the network, and AdaBN uses them).
    adaptation_schedule : {"ganin", "constant"}, default="ganin"
        Ramp the weight up along Ganin's schedule, or hold it from the first step.
    gamma : float, default=10.0
        Steepness of Ganin's schedule (the weight passes 90% of its maximum at
        ``p = 0.29`` with 10).
    domain_hidden : int, default=256
        Width of the two hidden layers of DANN's domain head.
    adabn : bool, default=True
        Source-matched AdaBN after training: BatchNorm statistics under which the
        target images (the unlabelled rows of ``fit``) are normalised as the source
        images were.
    guard : bool, default=True
        Also fine-tune on the source alone and compare (``adaptation_check_``); warn
        when adaptation looks harmful.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels of the labelled rows.
    multilabel_ : bool
        Always False (multi-label ``y`` is not supported).
    %(trust_attributes)s
    adaptation_check_ : AdaptationCheck or None
        With ``guard=True`` and unlabelled rows: the guard's ``signal``, its value for
        the ``adapted`` model and for the ``source_only`` one on the unlabelled rows,
        their ``agreement`` (share of those rows given the same class),
        ``looks_harmful`` and the ``margin`` of that verdict. None otherwise.
    %(shared_attributes)s

    See Also
    --------
    FineTuneClassifier : The same without target images.
    information_maximization_scorer : An unsupervised selection score on target rows.

    Notes
    -----
    %(shared_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import DomainAdaptationClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    >>> y = np.array([0, 1] * 8 + [-1] * 8)  # the last 8 images are unlabelled targets
    >>> clf = DomainAdaptationClassifier("resnet18", weights=None, max_epochs=2,
    ...                                  image_size=32, random_state=0).fit(X, y)
    >>> clf.classes_
    array([0, 1])
    >>> "domain_loss" in clf.net_.history[-1]  # CORAL's, per epoch
    True
    >>> clf.adaptation_check_.signal  # the guard: compared with source-only training
    'im'
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        unfreeze: int | str = "all",
        lr: float | str = 1e-3,
        lr_decay: float | None = 1.0,
        schedule: str = "onecycle",
        batchnorm: str = "frozen",
        freeze_epochs: int = 0,
        max_epochs: int = 15,
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
        calibration: str | None = None,
        reject_label: object = None,
        novelty: str = "mahalanobis",
        keep_rate: float = 0.95,
        method: str = "coral",
        adaptation_weight: float = 1.0,
        adaptation_schedule: str = "ganin",
        gamma: float = 10.0,
        domain_hidden: int = 256,
        adabn: bool = True,
        guard: bool = True,
    ):
        self._store_params(locals())

    _parameter_constraints: dict = {
        # one label per image, and no distillation: not FineTuneClassifier's task_weights
        # and teacher parameters
        **{k: v for k, v in FineTuneClassifier._parameter_constraints.items()
           if k not in ("task_weights", "teacher", "distill_temperature", "distill_weight")},
        "method": [options(ADAPTATION_METHODS)],
        "adaptation_weight": [Numbers(numbers.Real, 0, None, closed="left")],
        "adaptation_schedule": [options(ADAPTATION_SCHEDULES)],
        "gamma": [Numbers(numbers.Real, 0, None, closed="neither")],
        "domain_hidden": [POSITIVE],
        "adabn": ["boolean"],
        "guard": ["boolean"],
    }

    _net_class = DomainNet
    # the guard's twin and AdaBN come after training: a checkpoint's epochs are the same
    _VOLATILE = FineTuneClassifier._VOLATILE | {"guard", "adabn"}

    # ------------------------------------------------------------------ fit
    def fit(self, X: object, y: object, sample_weight: object = None, *,
            X_target: object = None,
            sample_domain: object = None) -> DomainAdaptationClassifier:
        """Fine-tune on the labelled rows while aligning them with the unlabelled ones.

        Parameters
        ----------
        X : images
            Source and target images, as :class:`FineTuneClassifier` takes them.
        y : array-like of shape (n_samples,)
            Labels; unlabelled (target) rows marked ``-1`` (numeric labels), ``None`` or
            NaN (object labels).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the labelled rows in the classification loss (the values of
            unlabelled rows are not used). Images of ``X_target`` weigh 1.
        X_target : images, default=None
            More target images, appended after ``X`` as unlabelled rows. Errors name
            them as ``X_target[j]``.
        sample_domain : array-like of shape (n_samples,), default=None
            The domain of each row, in skada's convention: a positive integer for source
            rows, a negative one for target rows, whose labels in ``y`` are then
            ignored. Several source (or target) domains are pooled into one.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if X_target is not None or sample_domain is not None:
            X = _DomainInput(X, X_target, sample_domain)
        return super().fit(X, y, sample_weight)

    def _prepare(self, X: object, y: object, sample_weight: object):
        self._check_adaptation()
        if isinstance(X, _DomainInput):
            X, y, sample_weight = self._resolve(X, y, sample_weight)
        source, targets, info, weights = super()._prepare(X, y, sample_weight)
        if not (targets < 0).any():
            warnings.warn(
                f"{type(self).__name__}: y has no unlabelled rows (-1, None or NaN) and no "
                "X_target was given, so there is nothing to adapt to: this fit is plain "
                "fine-tuning, as FineTuneClassifier's", UserWarning, stacklevel=4)
        return source, targets, info, weights

    def _check_adaptation(self) -> None:
        """Refuse a setting where nothing can adapt (checked by ``fit`` and ``lr_find``,
        not on import: a model fitted so before this check existed still loads)."""
        parts = self.method.split("+")
        idle = [m for m in parts if m in FEATURE_METHODS]
        if self.unfreeze == 0 and idle and self.adaptation_weight > 0:
            reason = (f"unfreeze=0 freezes every layer of the body, so {idle[0]!r}, which "
                      "acts on the body's features, has nothing to move")
            if len(idle) == len(parts):
                raise ValueError(
                    f"{reason}: this fit would be source-only fine-tuning of the head. "
                    "Use unfreeze >= 1 (the default, 'all', adapts every layer), or "
                    "method='mcc', which adapts the head too, or FineTuneClassifier for "
                    "source-only training")
            warnings.warn(f"{reason}; only {'+'.join(m for m in parts if m not in idle)!r} "
                          "adapts (the head)", UserWarning, stacklevel=5)

    @staticmethod
    def _resolve(inputs: _DomainInput, y: object, sample_weight: object):
        """One source of images and one ``y`` (target rows marked) from ``fit``'s
        ``X``, ``X_target`` and ``sample_domain``."""
        source = as_image_source(inputs.X)
        y = as_label_array(y)
        if y.ndim != 1 or len(y) != len(source):
            raise ValueError(f"X has {len(source)} images but y has shape {y.shape}; "
                             "y needs one label per image of X")
        y = y.astype(object)  # copied: the caller's y is never written to
        if inputs.sample_domain is not None:
            domain = as_label_array(inputs.sample_domain)
            if domain.shape != (len(source),) or domain.dtype.kind not in "iu":
                raise ValueError(f"sample_domain must hold one integer per image of X "
                                 f"({len(source)}), got shape {domain.shape}, dtype "
                                 f"{domain.dtype}")
            zero = np.flatnonzero(domain == 0)
            if len(zero):
                raise ValueError(f"sample_domain[{zero[0]}] is 0; use a positive number for "
                                 "source rows and a negative one for target rows")
            unlabelled_source = np.flatnonzero((domain > 0) & unlabelled_mask(y))
            if len(unlabelled_source):
                i = unlabelled_source[0]
                raise ValueError(f"sample_domain[{i}] marks a source row but y[{i}] is "
                                 f"unlabelled ({y[i]!r}); source rows need labels")
            y[domain < 0] = None
        if inputs.X_target is not None:
            try:
                target = as_image_source(inputs.X_target)
            except ImageInputError as exc:
                raise renamed(exc, "X_target") from None
            source = ConcatSource(source, target, "X_target")
            y = np.concatenate([y, np.full(len(target), None, dtype=object)])
            if sample_weight is not None:
                sample_weight = np.concatenate([np.asarray(sample_weight, dtype=np.float64),
                                                np.ones(len(target))])
        return source, y, sample_weight

    def _encode_targets(self, y: object, n_samples: int) -> tuple[np.ndarray, dict]:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs labels y")
        y = as_label_array(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y)
        if y.ndim != 1:
            raise ValueError(f"{type(self).__name__} takes one label per image (1-D y), "
                             f"got shape {y.shape}; multi-label y is not supported")
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} images but y has {len(y)} labels")
        unlabelled = unlabelled_mask(y)
        if unlabelled.all():
            raise ValueError("y has no labelled rows: every label is the unlabelled marker "
                             "(-1, None or NaN); domain adaptation learns the classes from "
                             "labelled source images")
        labels = labelled_values(y[~unlabelled])
        encoded, info = super()._encode_targets(labels, len(labels))
        targets = np.full(n_samples, -1, dtype=np.int64)
        targets[~unlabelled] = encoded
        return targets, info

    def _module(self, backbone, info: dict, device) -> DomainTransferNet:
        adapter = make_adapter(self.method, backbone.num_features, int(self.domain_hidden))
        return DomainTransferNet(backbone.body, backbone.num_features,
                                 self._n_outputs(info), backbone.preprocessing, adapter,
                                 channels_last=_runtime.use_channels_last(device),
                                 batchnorm=self.batchnorm)

    def _training_callbacks(self, train_ds) -> list:
        if not len(domain_positions(train_ds)[1]):
            return []
        names = ["source_loss", *adapter_stats(self.method)]
        return [("adaptation", AdaptationSchedule(float(self.adaptation_weight),
                                                  self.adaptation_schedule,
                                                  float(self.gamma)))] + [
            (name, PassthroughScoring(name, lower_is_better=None, on_train=True))
            for name in names]

    def _after_training(self, net, plain_train, validate: bool) -> None:
        super()._after_training(net, plain_train, validate)
        if self.adabn:
            source, target = domain_positions(plain_train)
            if len(target):
                def rows(positions):
                    return self._dataset(plain_train.source, plain_train.prep,
                                         plain_train.targets,
                                         [plain_train.indices[i] for i in positions])

                try:
                    match_statistics(net, rows(source), rows(target))
                except Exception as exc:  # the trained model is kept
                    warnings.warn(
                        f"{type(self).__name__}: AdaBN failed ({type(exc).__name__}: "
                        f"{exc}); the model keeps the BatchNorm statistics it trained "
                        "with, as with adabn=False", UserWarning, stacklevel=5)

    def _set_fitted(self, *args, **kwargs) -> None:
        super()._set_fitted(*args, **kwargs)
        self.adaptation_check_ = None  # until the guard runs (not after a Ctrl-C)

    def _after_fit(self, source, targets: np.ndarray, weights: np.ndarray | None,
                   seed: int) -> None:
        """``guard``: fine-tune a source-only twin (same settings, same seed) and compare
        the two on the unlabelled rows with the guard's signal (``adaptation_check_``);
        warn when adaptation looks harmful. Needs 2 unlabelled rows at least."""
        unlabelled = np.flatnonzero(targets < 0)
        if not self.guard or len(unlabelled) < 2:
            return
        labelled = np.flatnonzero(targets >= 0)
        shared = FineTuneClassifier().get_params(deep=False)
        params = {k: v for k, v in self.get_params(deep=False).items() if k in shared}
        params.update(checkpoint=None, callbacks=None, verbose=False, class_weight=None,
                      random_state=seed, calibration=None, reject_label=None)
        twin = FineTuneClassifier(**params)
        twin.fit(source.subset(labelled.tolist()), targets[labelled],
                 None if weights is None else weights[labelled])
        rows = source.subset(unlabelled.tolist())
        adapted, reference = self.predict_proba(rows), twin.predict_proba(rows)
        signal = SIGNALS[GUARD_SIGNAL]
        a, b = signal(adapted), signal(reference)
        self.adaptation_check_ = AdaptationCheck(
            GUARD_SIGNAL, a, b,
            float(np.mean(adapted.argmax(axis=1) == reference.argmax(axis=1))),
            bool(a < b - GUARD_MARGIN), GUARD_MARGIN)
        if self.fit_cost_ is not None and twin.fit_cost_ is not None:
            self.fit_cost_ = self.fit_cost_ + twin.fit_cost_
        if self.adaptation_check_.looks_harmful:
            warnings.warn(
                f"{type(self).__name__}: adaptation looks harmful on these target images: "
                f"their {GUARD_SIGNAL} signal is {a:.3f} against {b:.3f} for the same "
                f"network fine-tuned on the source alone (the guard's margin is "
                f"{GUARD_MARGIN}). Try a lower adaptation_weight, another method, or "
                "FineTuneClassifier; see adaptation_check_", UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ score
    _NO_LABEL_HINT = "; for target rows use sktransfer.prediction_entropy_scorer"

    def score(self, X: object, y: object, sample_weight: object = None) -> float:
        """Accuracy on the labelled rows of ``y``: the source domain's accuracy.

        Unlabelled rows are left out; this is why the score says nothing about the
        target domain (see :func:`sktransfer.prediction_entropy_scorer`).

        Parameters
        ----------
        X : images
            Images, as for :meth:`predict`.
        y : array-like of shape (n_samples,)
            Labels, unlabelled rows marked as for :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        score : float
            Mean accuracy over the labelled rows.
        """
        return super().score(X, y, sample_weight)  # the labelled rows

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags

    def __setstate__(self, state: dict) -> None:
        # pickled before AdaBN and the guard existed: it had neither
        state = {"adabn": False, "guard": False, **state}
        if "net_" in state:
            state.setdefault("adaptation_check_", None)
        super().__setstate__(state)

    def __sktransfer_export__(self):
        module, prep, groups, fitted = super().__sktransfer_export__()
        check = getattr(self, "adaptation_check_", None)
        fitted["adaptation_check"] = None if check is None else check._asdict()
        return module, prep, groups, fitted

    def __sktransfer_restore__(self, backbone, state: dict, fitted: dict):
        super().__sktransfer_restore__(backbone, state, fitted)
        check = fitted.get("adaptation_check")
        self.adaptation_check_ = None if check is None else AdaptationCheck(**check)
        return self


def with_target_statistics(estimator, X_target: object, X_source: object = None):
    """A copy of a fitted fine-tuner whose BatchNorm layers normalise images like
    ``X_target``; the estimator itself is left as it was.

    With ``X_source``, source-matched AdaBN (:func:`~sktransfer._batchnorm.match_statistics`);
    without, plain AdaBN (Li et al. 2016: every layer's statistics recomputed on
    ``X_target``).
    """
    import copy

    check_is_fitted(estimator, "net_")
    adapted = copy.deepcopy(estimator)
    target = adapted._dataset(as_image_source(X_target), adapted.preprocessing_)
    with adapted._predicting():
        if X_source is None:
            recalibrate(adapted.net_, target, which="all")
        else:
            match_statistics(adapted.net_, adapted._dataset(as_image_source(X_source),
                                                            adapted.preprocessing_), target)
    return adapted
