"""Likely mislabelled images by confident learning (Northcutt, Jiang and Chuang 2021),
from out-of-fold predicted probabilities, as cleanlab's ``find_label_issues`` with
``filter_by="confident_learning"`` and ranking by self-confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._losses_table import encode, paths_of, require_pandas, single_labels

THRESHOLD_SLACK = 1e-6  # cleanlab's: a probability equal to its class threshold counts


@dataclass
class Issues:
    """What confident learning found, one entry per image."""

    classes: np.ndarray  # the probability columns' labels
    labels: np.ndarray  # given label's column
    proba: np.ndarray  # (n, n_classes) out-of-sample probabilities
    issue: np.ndarray  # bool: flagged as mislabelled
    suggested: np.ndarray  # column of the label confident learning suggests

    @property
    def self_confidence(self) -> np.ndarray:
        """Each image's probability of its given label: low means suspect."""
        return self.proba[np.arange(len(self.labels)), self.labels]

    def ranked(self) -> np.ndarray:
        """Indices of the flagged images, lowest self-confidence first."""
        flagged = np.flatnonzero(self.issue)
        return flagged[np.argsort(self.self_confidence[flagged], kind="stable")]


def confident_learning(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flag the off-diagonal entries of the confident joint.

    Class ``j``'s threshold is the mean probability of ``j`` over the images labelled ``j``
    (a class no image is labelled with is never confident). An image is confidently of
    every class whose probability reaches that class's threshold; its guessed true class
    is that class, or the class of highest probability when several are confident (as
    cleanlab). It is flagged when it is confidently of some class, its guess differs
    from its label, and its label is not the class of highest probability.

    Returns
    -------
    issue : ndarray of bool
        Whether each image is flagged.
    suggested : ndarray of int
        The guessed class of each image (the class of highest probability where no
        class is confident).
    """
    n_classes = proba.shape[1]
    thresholds = np.full(n_classes, np.inf)
    for j in range(n_classes):
        mine = labels == j
        if mine.any():
            thresholds[j] = proba[mine, j].mean()
    confident = proba >= thresholds - THRESHOLD_SLACK
    n_confident = confident.sum(axis=1)
    argmax = proba.argmax(axis=1)
    guess = np.where(n_confident > 1, argmax, confident.argmax(axis=1))
    issue = (n_confident > 0) & (guess != labels) & (argmax != labels)
    suggested = np.where(n_confident > 0, guess, argmax)
    return issue, suggested


def out_of_sample_proba(estimator: object, X: object, y: np.ndarray,
                        cv: object) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of images no model that gives them saw in training, and their
    columns' labels: cross-validated, or the fitted estimator's own (``cv="prefit"``)."""
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import cross_val_predict
    from sklearn.utils.validation import check_is_fitted

    if isinstance(estimator, FrozenEstimator):  # scikit-learn's own way to say "prefit"
        estimator, cv = estimator.estimator, "prefit"
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(f"label_issues needs a classifier with predict_proba; "
                        f"{type(estimator).__name__} has none")
    if isinstance(cv, str):
        if cv != "prefit":
            raise ValueError(f"cv must be 'prefit', an int, a splitter or an iterable of "
                             f"splits; got {cv!r}")
        check_is_fitted(estimator)
        return np.asarray(estimator.predict_proba(X), dtype=np.float64), \
            np.asarray(estimator.classes_)
    proba = cross_val_predict(clone(estimator), X, y, cv=cv, method="predict_proba")
    return np.asarray(proba, dtype=np.float64), np.unique(y)  # cross_val_predict's order


def find_issues(estimator: object, X: object, y: object, cv: object) -> Issues:
    """Run the estimator and confident learning on ``X``, ``y``."""
    y = single_labels(y, _n_samples(X))
    proba, classes = out_of_sample_proba(estimator, X, y, cv)
    if proba.shape != (len(y), len(classes)):
        raise ValueError(f"predict_proba returned shape {proba.shape}, expected "
                         f"({len(y)}, {len(classes)})")
    labels = encode(y, classes)
    issue, suggested = confident_learning(labels, proba)
    return Issues(classes, labels, proba, issue, suggested)


def label_issues(estimator: object, X: object, y: object, *, cv: object = 5,
                 return_scores: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Find images that are probably mislabelled, by confident learning.

    Confident learning (Northcutt, Jiang and Chuang, 2021) compares each image's given
    label with out-of-sample predicted probabilities. Class ``j``'s threshold is the
    mean probability of ``j`` over the images labelled ``j``; an image is confidently of
    the classes whose probability reaches their threshold (the most probable one when
    several do). It is flagged when that class differs from its given label and its given
    label is not its most probable class: the off-diagonal of the confident joint, as
    cleanlab's ``find_label_issues(filter_by="confident_learning")``. The flagged images
    are ranked by self-confidence, the probability of their given label, lowest first.

    The probabilities are out-of-fold: ``cross_val_predict(clone(estimator), X, y,
    cv=cv, method="predict_proba")``, so every image is scored by a model that did not
    train on it (``cv`` models are fitted; ``estimator`` itself is left alone).

    Parameters
    ----------
    estimator : classifier
        A classifier with ``predict_proba``: any sktransfer classifier, or a
        :class:`~sklearn.pipeline.Pipeline` such as ``make_pipeline(
        PretrainedFeatureExtractor(), LogisticRegression())``; fitted when
        ``cv="prefit"``.
    X : images or array-like
        What ``estimator`` takes: file paths, arrays, PIL images...
    y : array-like of shape (n_samples,)
        The given (possibly wrong) label of each image.
    cv : int, cross-validation generator, iterable or "prefit", default=5
        How the out-of-sample probabilities are made: the folds, as
        :func:`~sklearn.model_selection.cross_val_predict` takes them (an int means
        stratified folds); or ``"prefit"``: ``estimator`` is already fitted and ``X`` was
        not in its training set (a held-out labelled folder), so its own
        ``predict_proba`` is used. Passing a
        :class:`~sklearn.frozen.FrozenEstimator` also means ``"prefit"``. A class of
        ``y`` absent from ``estimator.classes_`` is then an error.
    return_scores : bool, default=False
        Also return every image's self-confidence, to rank all of them (``np.argsort``
        of it, lowest first, is the whole ranking of which the flagged images are the
        confident part).

    Returns
    -------
    issues : ndarray of int
        Positions in ``X`` of the flagged images, lowest self-confidence first; empty
        when none is flagged.
    self_confidence : ndarray of shape (n_samples,)
        Only with ``return_scores``: each image's out-of-sample probability of its given
        label (low means suspect).

    Raises
    ------
    TypeError
        If ``estimator`` has no ``predict_proba``.
    ValueError
        If ``y`` is not one label per image, or with ``cv="prefit"`` holds labels not in
        ``estimator.classes_``.

    See Also
    --------
    sktransfer.inspect.top_losses : The images of highest loss of a fitted classifier.

    References
    ----------
    .. [1] C. Northcutt, L. Jiang, I. Chuang, "Confident Learning: Estimating
       Uncertainty in Dataset Labels", Journal of Artificial Intelligence Research 70,
       2021.
    """
    found = find_issues(estimator, X, y, cv)
    issues = found.ranked()
    return (issues, found.self_confidence) if return_scores else issues


def _n_samples(X: object) -> int:
    if hasattr(X, "shape"):
        return int(X.shape[0])
    return len(X)


def issue_table(estimator: object, X: object, y: object, *, cv: object = 5,
                all_rows: bool = False) -> object:
    """The label issues as a table, for people and the command line's ``label_issues.csv``.

    Parameters
    ----------
    estimator, X, y, cv
        As :func:`sktransfer.inspect.label_issues`.
    all_rows : bool, default=False
        Every image (with an ``issue`` column), not only the flagged ones.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``index`` (position in ``X``), ``path`` (when ``X`` holds file paths),
        ``given`` (the label in ``y``), ``suggested`` (the label confident learning
        guesses), ``self_confidence`` (the probability of the given label), and with
        ``all_rows`` ``issue``; the flagged images first, lowest self-confidence first.
    """
    pd = require_pandas("label_issues' table")
    found = find_issues(estimator, X, y, cv)
    if all_rows:
        rest = np.flatnonzero(~found.issue)
        rest = rest[np.argsort(found.self_confidence[rest], kind="stable")]
        order = np.concatenate([found.ranked(), rest])
    else:
        order = found.ranked()
    table = {"index": order}
    paths = paths_of(X)
    if paths is not None:
        table["path"] = [paths[i] for i in order]
    table.update({"given": found.classes[found.labels[order]],
                  "suggested": found.classes[found.suggested[order]],
                  "self_confidence": found.self_confidence[order]})
    if all_rows:
        table["issue"] = found.issue[order]
    return pd.DataFrame(table)


__all__: list[str] = []
