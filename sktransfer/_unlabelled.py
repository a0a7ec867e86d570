"""Unlabelled rows in ``y`` (scikit-learn's semi-supervised convention) and a score that
needs no labels: the prediction entropy on those rows."""

from __future__ import annotations

import numbers

import numpy as np

from ._signals import information_maximization, negative_entropy
from .images import as_image_source


def as_label_array(y: object) -> np.ndarray:
    """``y`` as a NumPy array (pandas objects by their values), without copying when
    possible."""
    return np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)


def _marks_unlabelled(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value or value == -1)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value == -1


def unlabelled_mask(y: np.ndarray) -> np.ndarray:
    """Which rows of 1-D ``y`` are unlabelled: ``-1`` for numeric labels, ``None`` or NaN
    for object labels (``-1`` too, when numeric); string arrays have no marker."""
    if y.dtype.kind in "iu":
        return y == -1
    if y.dtype.kind == "f":
        return np.isnan(y) | (y == -1)
    if y.dtype.kind == "O":
        return np.fromiter((_marks_unlabelled(v) for v in y), dtype=bool, count=len(y))
    return np.zeros(len(y), dtype=bool)


def labelled_values(y: np.ndarray) -> np.ndarray:
    """The labels of an object array's labelled rows in their natural dtype (ints stay
    ints, strings become a string array), as if the marker had never been there."""
    return np.asarray(y.tolist()) if y.dtype.kind == "O" else y


def prediction_entropy_scorer(estimator, X: object, y: object = None) -> float:
    """Score a classifier by the confidence of its predictions on unlabelled rows.

    The score is minus the mean entropy of the predicted class probabilities.

    An unsupervised model-selection criterion for domain adaptation (used by Long et al.
    2018 and Morerio et al. 2018; skada's ``PredictionEntropyScorer``): target labels are
    unknown, so prefer the model whose target predictions are most confident. Higher is
    better, as scikit-learn scorers go; pass it as ``scoring=`` to ``GridSearchCV`` or
    ``cross_validate``.

    Its limits: confidence is not correctness. A model that collapses onto one class is
    perfectly confident; a model whose adaptation aligned the wrong classes can be
    confident and wrong. Use it to choose among settings that all keep a sound source
    accuracy (report both), not alone, and over a small grid.

%(parameters)s
    Returns
    -------
    score : float
        ``-mean(H(p))`` in nats, between ``-log(n_classes)`` and 0.
    """
    return negative_entropy(_unlabelled_proba("prediction_entropy_scorer", estimator, X, y))


def information_maximization_scorer(estimator, X: object, y: object = None) -> float:
    """Score a classifier by how confident and diverse its unlabelled predictions are.

    ``H(mean_i p_i) - mean_i H(p_i)``: the entropy of the mean prediction (high when the
    classes are used evenly) minus the mean entropy of the predictions (low when each is
    confident); the mutual information between images and predicted classes (Shi & Sha
    2012; SHOT's objective, Liang et al. 2020). Higher is better. Unlike
    :func:`prediction_entropy_scorer` a collapse onto one class scores 0, the lowest.

    On the shift-family study of the performance page it tracked target accuracy best of
    the signals tried (rank correlation with held-out target accuracy across settings,
    per family and seed), and it is the signal of ``DomainAdaptationClassifier``'s
    guard. Its assumption is that the target uses the classes about as evenly as the
    source: on a target that holds only some of the classes it prefers the models that
    spread their predictions over all of them, which is wrong there.

%(parameters)s
    Returns
    -------
    score : float
        In nats, between 0 and ``log(n_classes)``.
    """
    return information_maximization(
        _unlabelled_proba("information_maximization_scorer", estimator, X, y))


_SCORER_PARAMETERS = """\
Parameters
    ----------
    estimator : fitted classifier
        Anything with ``predict_proba`` (a Pipeline too).
    X : images
        The rows to score.
    y : array-like of shape (n_samples,), default=None
        Labels with the unlabelled rows marked (``-1``, ``None`` or NaN): only those
        rows are scored. None scores every row of ``X``.
"""
for _scorer in (prediction_entropy_scorer, information_maximization_scorer):
    _scorer.__doc__ = _scorer.__doc__.replace("%(parameters)s",
                                              "    " + _SCORER_PARAMETERS)


def _unlabelled_proba(scorer: str, estimator, X: object, y: object) -> np.ndarray:
    """``estimator``'s probabilities for the unlabelled rows of ``X`` (all when ``y`` is
    None)."""
    if y is None:
        rows = X
    else:
        y = as_label_array(y)
        mask = unlabelled_mask(y)
        if not mask.any():
            raise ValueError(f"{scorer} scores unlabelled rows (y = -1, None or NaN), and "
                             "this y has none; pass y=None to score all rows")
        rows = as_image_source(X).subset(np.flatnonzero(mask).tolist())
    return np.asarray(estimator.predict_proba(rows), dtype=np.float64)
