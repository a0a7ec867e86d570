"""Tables of a fitted classifier's mistakes: the images with the highest loss, and the
pairs of classes it confuses most (fastai's ``ClassificationInterpretation``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pandas import DataFrame


def require_pandas(what: str):
    """Import pandas, or say which function needs it and how to install it."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{what} returns a pandas DataFrame and needs pandas: pip install "
                          "pandas") from exc
    return pd


def check_k(k: object) -> int | None:
    """``k`` as a positive int, or None (all rows)."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    return int(k)


def single_labels(y: object, n_samples: int) -> np.ndarray:
    """``y`` as a 1-D array of one label per image."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must hold one label per image (1-D); got shape {y.shape} "
                         "(multi-label targets are not supported)")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} images but y has {len(y)} labels")
    return y


def encode(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Column of each label of ``y`` in ``classes``; names labels it does not hold."""
    lookup = {_key(c): i for i, c in enumerate(np.asarray(classes).tolist())}
    codes = np.fromiter((lookup.get(_key(v), -1) for v in y.tolist()), dtype=np.intp,
                        count=len(y))
    if (codes < 0).any():
        unknown = list(dict.fromkeys(y[codes < 0].tolist()))
        raise ValueError(f"y holds labels the estimator was not fitted on: {unknown[:5]}; "
                         f"its classes_ are {np.asarray(classes).tolist()}")
    return codes


def _key(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def paths_of(X: object) -> list[str] | None:
    """The file path of each image when ``X`` holds paths (a list, an object array, a
    pandas Series or one-column DataFrame of them), else None."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        return None
    if hasattr(X, "iloc") and hasattr(X, "columns"):
        if X.shape[1] != 1:
            return None
        X = X.iloc[:, 0]
    if hasattr(X, "iloc"):
        X = X.to_numpy(dtype=object)
    if not isinstance(X, (list, tuple, np.ndarray)) or not len(X):
        return None
    if all(isinstance(item, (str, Path, os.PathLike)) for item in X):
        return [os.fspath(item) for item in X]
    return None


def top_losses(estimator: object, X: object, y: object, *, k: int | None = 9) -> DataFrame:
    """The images a fitted classifier gets most wrong: those of highest loss.

    The loss of an image is its cross-entropy, ``-log p(true class)``, with the
    probabilities of ``estimator.predict_proba``: the images predicted wrong with
    confidence come first, then the ones predicted right with little confidence.

    Parameters
    ----------
    estimator : classifier
        Fitted, with ``predict_proba`` and ``classes_``: any sktransfer classifier, a
        :class:`~sklearn.pipeline.Pipeline` ending in a classifier, or any scikit-learn
        classifier of what ``X`` holds.
    X : images or array-like
        What ``estimator`` predicts from: file paths, arrays, PIL images... (see
        :func:`sktransfer.images.as_image_source`), or any input the estimator takes.
    y : array-like of shape (n_samples,)
        The true label of each image, among ``estimator.classes_``.
    k : int or None, default=9
        How many images to list; ``None`` lists them all.

    Returns
    -------
    table : pandas.DataFrame
        One row per image, highest loss first, with columns ``index`` (position in
        ``X``), ``path`` (only when ``X`` holds file paths: a list of ``str`` or
        :class:`~pathlib.Path`, or a pandas Series or one-column DataFrame of them),
        ``true`` (label in ``y``), ``predicted`` (the class of highest probability),
        ``probability`` (of the predicted class) and ``loss``.

    Raises
    ------
    ValueError
        If ``y`` holds labels not in ``estimator.classes_``, is not one label per image
        (multi-label targets are not supported), or ``k`` is not a positive integer.
    """
    pd = require_pandas("top_losses")
    k = check_k(k)
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"predict_proba returned shape {proba.shape}; top_losses needs one "
                         f"probability per class of classes_ ({len(classes)})")
    y = single_labels(y, len(proba))
    codes = encode(y, classes)
    rows = np.arange(len(proba))
    loss = -np.log(np.clip(proba[rows, codes], np.finfo(np.float64).tiny, 1.0))
    predicted = proba.argmax(axis=1)
    order = np.argsort(-loss, kind="stable")[:k]
    table = {"index": order}
    paths = paths_of(X)
    if paths is not None:
        table["path"] = [paths[i] for i in order]
    table.update({"true": y[order], "predicted": classes[predicted[order]],
                  "probability": proba[order, predicted[order]], "loss": loss[order]})
    return pd.DataFrame(table)


def most_confused(estimator: object, X: object, y: object, *,
                  min_count: int = 1) -> DataFrame:
    """The pairs of classes a fitted classifier confuses most often.

    The off-diagonal cells of the confusion matrix of ``estimator.predict(X)`` against
    ``y``, as a list (fastai's ``ClassificationInterpretation.most_confused``).

    Parameters
    ----------
    estimator : classifier
        Fitted, with ``predict``.
    X : images or array-like
        What ``estimator`` predicts from.
    y : array-like of shape (n_samples,)
        The true label of each image.
    min_count : int, default=1
        Leave out the pairs seen fewer times than this.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``true``, ``predicted`` (labels, never equal) and ``count`` (how many
        images of class ``true`` were predicted ``predicted``), highest count first
        (ties in the order of the labels); no row when every image is predicted right.
    """
    pd = require_pandas("most_confused")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or \
            min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    predicted = np.asarray(estimator.predict(X))
    y = single_labels(y, len(predicted))
    wrong = y != predicted
    frame = pd.DataFrame({"true": y[wrong], "predicted": predicted[wrong]})
    counts = frame.groupby(["true", "predicted"], sort=True).size().reset_index(name="count")
    counts = counts[counts["count"] >= min_count]
    counts = counts.sort_values("count", ascending=False, kind="stable")
    return counts.reset_index(drop=True).astype({"count": np.int64})


__all__: list[str] = []
