"""A fitted classifier with its probabilities for one input already computed."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class FixedPredictions(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose probabilities for one list of images are already known.

    ``sktransfer inspect``'s report reads them four times (losses, confusions,
    calibration, label issues); this computes them once. Other inputs go to the
    classifier itself.
    """

    def __init__(self, model, X: list, proba: np.ndarray):
        self.model, self.X, self.proba = model, X, proba
        self.classes_ = np.asarray(model.classes_)
        self._labels = None

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X, y):  # a report never refits it (label issues: cv="prefit")
        raise NotImplementedError("the report's predictions are fixed")

    def predict_proba(self, X) -> np.ndarray:
        return self.proba if X is self.X else self.model.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        if X is not self.X:
            return self.model.predict(X)
        if self._labels is None:  # a reject label needs the model's own predict
            rejects = getattr(self.model, "reject_label", None) is not None
            self._labels = np.asarray(self.model.predict(X)) if rejects else \
                self.classes_[self.proba.argmax(axis=1)]
        return self._labels
