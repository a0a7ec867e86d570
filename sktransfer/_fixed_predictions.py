"""A fitted classifier with its probabilities for one input already computed."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class FixedPredictions(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose probabilities for one list of images are already known.

    ``sktransfer inspect``'s report reads them four times (losses, confusions,
    calibration, label issues); this computes them once. Other inputs go to the
    classifier itself. ``labels`` are the model's own ``predict`` for ``X`` when it
    differs from the most probable class (a reject label).
    """

    def __init__(self, model, X: list, proba: np.ndarray, labels: np.ndarray | None = None):
        self.model, self.X, self.proba, self.labels = model, X, proba, labels
        self.classes_ = np.asarray(model.classes_)

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X, y):  # a report never refits it (label issues: cv="prefit")
        raise NotImplementedError("the report's predictions are fixed")

    def predict_proba(self, X) -> np.ndarray:
        return self.proba if X is self.X else self.model.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The model's labels (its reject label too, when given), else the most probable
        class."""
        if X is not self.X:
            return self.model.predict(X)
        if self.labels is not None:
            return self.labels
        return self.classes_[self.proba.argmax(axis=1)]
