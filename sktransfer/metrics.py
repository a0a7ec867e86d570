"""Calibration of predicted probabilities: the expected calibration error (ECE), its
scorer, and the reliability diagram.

A classifier is calibrated when, among the samples it predicts with confidence 0.8, 80 %
are right. Fine-tuned networks are often overconfident (Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017); the ECE measures by how much, and the reliability
diagram shows where. Both use the top-label confidence, the largest predicted
probability of each sample, binned: equal-width bins on [0, 1] (``strategy="uniform"``)
or bins of equal weight (``strategy="quantile"``).
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

_NO_MATPLOTLIB = "plot_reliability needs matplotlib: pip install 'sktransfer[plot]'"
_DIAGONAL = "sktransfer-perfect-calibration"


def _check_inputs(y_true: ArrayLike, y_prob: ArrayLike, sample_weight: ArrayLike | None,
                  labels: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate; return the top-label confidence, whether its class is right, the weights."""
    y_true = np.asarray(y_true.to_numpy() if hasattr(y_true, "to_numpy") else y_true)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D (one label per sample), got shape {y_true.shape}")
    prob = np.asarray(y_prob)
    if prob.dtype.kind not in "f":
        prob = prob.astype(np.float64)
    if prob.ndim == 2 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if prob.ndim not in (1, 2):
        raise ValueError("y_prob must be of shape (n_samples, n_classes), or (n_samples,) "
                         f"for the positive class of a binary problem; got {prob.shape}")
    if len(y_true) == 0:
        raise ValueError("y_true is empty: no samples to score")
    if len(prob) != len(y_true):
        raise ValueError(f"y_true has {len(y_true)} samples but y_prob has {len(prob)} rows")
    outside = ~((prob >= 0) & (prob <= 1))  # NaN too
    if outside.any():
        at = tuple(int(i) for i in np.argwhere(outside)[0])
        index = ", ".join(map(str, at))
        raise ValueError(f"y_prob[{index}] = {prob[at]} is not a probability in [0, 1]")

    if labels is None:
        classes = np.unique(y_true)
        if prob.ndim == 1 and len(classes) != 2:
            raise ValueError(
                f"1-D y_prob is the probability of the positive class of a binary problem, "
                f"but y_true holds {len(classes)} class(es): {classes.tolist()}; pass "
                "labels=[negative, positive] (e.g. clf.classes_)")
        if prob.ndim == 2 and len(classes) != prob.shape[1]:
            raise ValueError(
                f"y_prob has {prob.shape[1]} columns but y_true holds {len(classes)} "
                f"classes: {classes.tolist()}; pass labels= naming the columns in order "
                "(e.g. clf.classes_)")
    else:
        classes = np.asarray(labels)
        if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
            raise ValueError(f"labels must be a 1-D list of distinct labels, got {labels!r}")
        n_columns = 2 if prob.ndim == 1 else prob.shape[1]
        if len(classes) != n_columns:
            what = "1-D y_prob (binary) needs 2" if prob.ndim == 1 else \
                f"y_prob has {n_columns} columns but there are"
            raise ValueError(f"{what} labels; got {len(classes)}: {classes.tolist()}")
        unknown = ~np.isin(y_true, classes)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            value = y_true[i:i + 1].tolist()[0]
            raise ValueError(f"y_true[{i}] = {value!r} is not among the labels (the "
                             f"columns of y_prob): {classes.tolist()}")

    if prob.ndim == 1:
        prob = np.column_stack([1 - prob, prob])
    else:
        tol = max(float(np.sqrt(np.finfo(prob.dtype).eps)), 1e-5)
        sums = prob.sum(axis=1)
        off = np.abs(sums - 1) > tol
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ValueError(f"row {i} of y_prob sums to {sums[i]:.6g}, not 1: y_prob must "
                             "hold probabilities (e.g. predict_proba), one row per sample")

    if sample_weight is None:
        weight = np.ones(len(y_true))
    else:
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != (len(y_true),):
            raise ValueError(f"sample_weight has shape {weight.shape} but there are "
                             f"{len(y_true)} samples")
        bad = ~(np.isfinite(weight) & (weight >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"sample_weight[{i}] = {weight[i]} is not a finite "
                             "non-negative number")
        if weight.sum() <= 0:
            raise ValueError("sample_weight sums to 0: no samples to score")

    predicted = np.argmax(prob, axis=1)  # the first column on a tie
    confidence = prob[np.arange(len(prob)), predicted].astype(np.float64)
    correct = classes[predicted] == y_true
    return confidence, correct.astype(np.float64), weight


def _bin(confidence: np.ndarray, weight: np.ndarray, n_bins: int,
         strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of each confidence, and the bin edges."""
    if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # [edges[k], edges[k + 1]); the last bin also holds 1.0
        return np.searchsorted(edges[1:-1], confidence, side="right"), edges
    if strategy == "quantile":
        order = np.argsort(confidence, kind="stable")
        cumulative = np.cumsum(weight[order])
        targets = cumulative[-1] * np.arange(1, n_bins) / n_bins
        # inverse of the weighted empirical CDF: integer weights bin as repeated samples
        inner = confidence[order][np.searchsorted(cumulative, targets, side="left")]
        edges = np.concatenate([[confidence.min()], inner, [confidence.max()]])
        # (edges[k], edges[k + 1]]; the first bin also holds its lower edge
        return np.searchsorted(inner, confidence, side="left"), edges
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


def reliability_curve(y_true: ArrayLike, y_prob: ArrayLike, *, n_bins: int = 15,
                      strategy: str = "uniform", sample_weight: ArrayLike | None = None,
                      labels: ArrayLike | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compute accuracy and mean confidence per bin of top-label confidence.

    The numbers behind the reliability diagram and the expected calibration error. Each
    sample's confidence is its largest predicted probability, and it counts as correct
    when that column's label is its true label.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, each row summing to 1, its columns in the order of
        ``labels``; or, for a binary problem, the probability of the positive class
        (``labels[1]``), as in :func:`sklearn.calibration.calibration_curve`.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins on [0, 1], ``[edges[k], edges[k + 1])``, the last
        one closed (a confidence of exactly 1.0 falls in the last bin).
        ``"quantile"``: bins of about equal weight, their edges quantiles of the
        confidences (the inverse of the weighted empirical distribution function, so that
        an integer weight counts as that many repeated samples), ``(edges[k],
        edges[k + 1]]``, the first one closed; tied confidences share a bin, so bins can
        be uneven or empty.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of each sample; equal weights when None.
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order (a fitted classifier's
        ``classes_``). When None, the sorted distinct labels of ``y_true``, which must
        then hold every class. Unlike :func:`sklearn.metrics.log_loss`, which takes the
        columns in sorted order whatever the order of ``labels``, the order given here is
        the order of the columns.

    Returns
    -------
    accuracy : ndarray of shape (n_bins,)
        Weighted share of correct predictions in each bin; NaN for an empty bin.
    confidence : ndarray of shape (n_bins,)
        Weighted mean confidence in each bin; NaN for an empty bin.
    share : ndarray of shape (n_bins,)
        Share of the total weight in each bin; sums to 1.
    bin_edges : ndarray of shape (n_bins + 1,)
        The bin edges: ``0 ... 1`` for uniform bins, from the smallest to the largest
        confidence for quantile bins.

    See Also
    --------
    expected_calibration_error : The share-weighted mean gap between the two curves.
    plot_reliability : Draw these numbers as a reliability diagram.
    """
    confidence, correct, weight = _check_inputs(y_true, y_prob, sample_weight, labels)
    index, edges = _bin(confidence, weight, n_bins, strategy)
    total = np.bincount(index, weight, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weight * correct, minlength=n_bins) / total
        mean_confidence = np.bincount(index, weight * confidence, minlength=n_bins) / total
    empty = total == 0
    accuracy[empty] = np.nan
    mean_confidence[empty] = np.nan
    return accuracy, mean_confidence, total / total.sum(), edges


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, *, n_bins: int = 15,
                               strategy: str = "uniform",
                               sample_weight: ArrayLike | None = None,
                               labels: ArrayLike | None = None) -> float:
    """Compute the expected calibration error of predicted probabilities.

    The top-label (confidence) ECE of Guo et al. (2017): the predictions are binned by
    their confidence, the largest predicted probability, and the ECE is the sum over bins
    of the bin's share of the samples times the gap between the bin's accuracy and its
    mean confidence. 0 is perfectly calibrated; lower is better.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, each row summing to 1, its columns in the order of
        ``labels``; or, for a binary problem, the probability of the positive class
        (``labels[1]``), whose confidence is then ``max(p, 1 - p)``.
    n_bins : int, default=15
        Number of bins (15, as Guo et al.).
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins on [0, 1] (a confidence of exactly 1.0 falls in the last bin), or
        bins of about equal weight; see :func:`reliability_curve` for the edges.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of each sample; an integer weight counts as that many repeated samples.
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob``, in column order (a fitted classifier's
        ``classes_``). When None, the sorted distinct labels of ``y_true``, which must
        then hold every class.

    Returns
    -------
    ece : float
        In ``[0, 1]``; 0 is perfectly calibrated.

    See Also
    --------
    expected_calibration_error_scorer : The same as a ``scoring=`` callable.
    plot_reliability : The reliability diagram of the same bins.
    sklearn.calibration.CalibratedClassifierCV : Calibrate a classifier.

    Examples
    --------
    >>> from sktransfer.metrics import expected_calibration_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [0.2, 0.9, 0.6, 0.4]  # P(class 1): all right, confidence 0.725 on average
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=2), 3)
    0.275
    """
    accuracy, confidence, share, _ = reliability_curve(
        y_true, y_prob, n_bins=n_bins, strategy=strategy, sample_weight=sample_weight,
        labels=labels)
    filled = share > 0
    return float(np.sum(share[filled] * np.abs(accuracy[filled] - confidence[filled])))


def expected_calibration_error_scorer(estimator, X: object, y: ArrayLike,
                                      sample_weight: ArrayLike | None = None) -> float:
    """Score a classifier by minus the expected calibration error of its probabilities.

    A ``scoring=`` callable for ``cross_val_score``, ``cross_validate`` or
    ``GridSearchCV``: higher is better, as scikit-learn scorers go. It passes the
    estimator's ``classes_`` as ``labels``, so a test fold that lacks a class scores
    correctly (a scorer from ``make_scorer`` cannot: it sees only the probabilities, and
    for a binary problem only the positive column). For other settings than the default
    15 uniform bins, write ``lambda est, X, y: -expected_calibration_error(y,
    est.predict_proba(X), labels=est.classes_, n_bins=10)``.

    Parameters
    ----------
    estimator : classifier
        Fitted, with ``predict_proba`` and ``classes_``.
    X : array-like or images
        What the estimator predicts from.
    y : array-like of shape (n_samples,)
        True labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of each sample.

    Returns
    -------
    score : float
        Minus :func:`expected_calibration_error`, in ``[-1, 0]``.
    """
    return -expected_calibration_error(y, estimator.predict_proba(X),
                                       sample_weight=sample_weight,
                                       labels=estimator.classes_)


def plot_reliability(y_true: ArrayLike, y_prob: ArrayLike, *, n_bins: int = 15,
                     strategy: str = "uniform", sample_weight: ArrayLike | None = None,
                     labels: ArrayLike | None = None, ax=None, label: str | None = None):
    """Draw the reliability diagram: accuracy against confidence, per bin.

    One point per non-empty bin at (mean confidence, accuracy), joined by a line; the
    dashed diagonal is perfect calibration (points below it are overconfident). Bars in
    the curve's colour show the share of samples in each bin, on the same 0-1 axis. The
    legend gives each curve's ECE. Call it again with the same ``ax`` to overlay another
    curve, e.g. before and after calibration. Needs matplotlib.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as for :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins on [0, 1], or bins of about equal weight.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of each sample.
    labels : array-like of shape (n_classes,), default=None
        The class of each column of ``y_prob`` (a fitted classifier's ``classes_``).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    label : str, default=None
        Name of this curve in the legend.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    See Also
    --------
    reliability_curve : The numbers drawn.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(_NO_MATPLOTLIB) from error
    accuracy, confidence, share, edges = reliability_curve(
        y_true, y_prob, n_bins=n_bins, strategy=strategy, sample_weight=sample_weight,
        labels=labels)
    filled = share > 0
    ece = float(np.sum(share[filled] * np.abs(accuracy[filled] - confidence[filled])))
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    if not any(line.get_gid() == _DIAGONAL for line in ax.get_lines()):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1,
                label="perfectly calibrated", gid=_DIAGONAL)
    name = f"ECE {ece:.3f}" if label is None else f"{label} (ECE {ece:.3f})"
    (line,) = ax.plot(confidence[filled], accuracy[filled], marker="o", label=name,
                      zorder=3)
    ax.bar(edges[:-1][filled], share[filled], width=np.diff(edges)[filled], align="edge",
           color=line.get_color(), alpha=0.25, edgecolor=line.get_color(), linewidth=0.5,
           label=f"_share {name}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (largest predicted probability)")
    ax.set_ylabel("accuracy (bars: share of samples)")
    ax.legend(loc="upper left")
    return ax


__all__ = [
    "expected_calibration_error",
    "expected_calibration_error_scorer",
    "plot_reliability",
    "reliability_curve",
]
