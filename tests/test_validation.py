"""Declared parameter constraints: the same rules for the same parameter in every estimator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from sktransfer import FineTuneClassifier, FineTuneRegressor, PretrainedFeatureExtractor

from ._helpers import tiny_cnn

X = np.random.default_rng(0).integers(0, 256, size=(8, 18, 18, 3), dtype=np.uint8)
Y = np.array([0, 1] * 4)
PREP = {"image_size": 16, "resize_size": 16}
ALL = [PretrainedFeatureExtractor, FineTuneClassifier, FineTuneRegressor]


def _fit(cls, **params):
    est = cls(tiny_cnn(), **PREP, **params)
    return est.fit(X) if cls is PretrainedFeatureExtractor else est.fit(X, Y)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("value", [True, 0, 2.5, "32"])
def test_batch_size_must_be_a_positive_int_not_a_bool(cls, value):
    with pytest.raises(InvalidParameterError, match=rf"'batch_size' parameter of "
                                                    rf"{cls.__name__} .* Got {value!r}"):
        _fit(cls, batch_size=value)


@pytest.mark.parametrize("cls", ALL)
def test_numpy_integers_are_integers(cls):
    extra = {"n_jobs": np.int64(1)} if cls is PretrainedFeatureExtractor else \
        {"max_epochs": np.int64(1), "unfreeze": np.int32(0)}
    _fit(cls, batch_size=np.int64(4), **extra)


@pytest.mark.parametrize("cls", [FineTuneClassifier, FineTuneRegressor])
@pytest.mark.parametrize("name, value", [
    ("validation_fraction", "x"), ("weight_decay", -1.0), ("random_state", "seed"),
    ("checkpoint", 3), ("callbacks", "progress"), ("lr", 0), ("lr", True),
])
def test_fine_tuning_parameters_are_checked_with_their_name(cls, name, value):
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter of {cls.__name__}"):
        _fit(cls, **{name: value})


def test_random_state_instance_is_accepted_and_reproducible():
    a = FineTuneClassifier(tiny_cnn(), max_epochs=1, unfreeze=0,
                           random_state=np.random.RandomState(3), **PREP).fit(X, Y)
    b = FineTuneClassifier(tiny_cnn(), max_epochs=1, unfreeze=0,
                           random_state=np.random.RandomState(3), **PREP).fit(X, Y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_continuous_targets_are_not_class_labels():
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        FineTuneClassifier(tiny_cnn(), max_epochs=1, **PREP).fit(X, np.linspace(0, 1, 8))


def test_backbone_and_preprocessing_are_keyword_only():
    with pytest.raises(TypeError):
        PretrainedFeatureExtractor(tiny_cnn(), "DEFAULT")
    with pytest.raises(TypeError):
        FineTuneClassifier(tiny_cnn(), "DEFAULT")
