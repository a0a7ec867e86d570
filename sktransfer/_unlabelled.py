"""Unlabelled rows in ``y`` (scikit-learn's semi-supervised convention) and a score that
needs no labels: the prediction entropy on those rows."""

from __future__ import annotations

import numbers

import numpy as np

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

    Parameters
    ----------
    estimator : fitted classifier
        Anything with ``predict_proba`` (a Pipeline too).
    X : images
        The rows to score.
    y : array-like of shape (n_samples,), default=None
        Labels with the unlabelled rows marked (``-1``, ``None`` or NaN): only those
        rows are scored. None scores every row of ``X``.

    Returns
    -------
    score : float
        ``-mean(H(p))`` in nats, between ``-log(n_classes)`` and 0.
    """
    if y is None:
        rows = X
    else:
        y = as_label_array(y)
        mask = unlabelled_mask(y)
        if not mask.any():
            raise ValueError("prediction_entropy_scorer scores unlabelled rows (y = -1, None "
                             "or NaN), and this y has none; pass y=None to score all rows")
        rows = as_image_source(X).subset(np.flatnonzero(mask).tolist())
    proba = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
    entropy = -(proba * np.log(np.clip(proba, 1e-12, None))).sum(axis=1)
    return -float(entropy.mean())
