"""The scikit-learn contract, checked for every public estimator.

``check_estimator`` skips estimators whose input is not a 2-D array, so this module
checks the contract itself on image input, plus the sklearn checks that need no data.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as sk_checks
from torch import nn

from sktransfer import (
    DomainAdaptationClassifier,
    FineTuneClassifier,
    FineTuneRegressor,
    FineTuneSegmenter,
    PretrainedFeatureExtractor,
)

from .conftest import tiny_cnn

RNG = np.random.default_rng(0)
X_IMAGES = RNG.integers(0, 256, size=(8, 18, 18, 3), dtype=np.uint8)
Y_LABELS = np.array(["a", "b"] * 4)
Y_VALUES = np.linspace(-1.0, 3.0, 8)
Y_PARTLY = np.array(["a", "b", None, "a", "b", None, "a", "b"], dtype=object)  # 2 targets
Y_MASKS = (X_IMAGES[..., 0] > 127).astype(np.int64)  # one label per pixel


def _extractor():
    return PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16)


def _classifier():
    return FineTuneClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=2,
                              unfreeze=1, random_state=0)


def _regressor():
    return FineTuneRegressor(tiny_cnn(), image_size=16, resize_size=16, max_epochs=2,
                             unfreeze=1, random_state=0)


def _adapter():
    return DomainAdaptationClassifier(tiny_cnn(), image_size=16, resize_size=16,
                                      max_epochs=2, unfreeze=1, random_state=0)


def _segmenter():
    return FineTuneSegmenter(tiny_cnn(), image_size=16, max_epochs=2, unfreeze=1,
                             random_state=0)


# (factory of a small estimator, its output method, targets to fit)
ESTIMATORS = {
    "PretrainedFeatureExtractor": (_extractor, "transform", Y_LABELS),
    "FineTuneClassifier": (_classifier, "predict_proba", Y_LABELS),
    "FineTuneRegressor": (_regressor, "predict", Y_VALUES),
    "DomainAdaptationClassifier": (_adapter, "predict_proba", Y_PARTLY),
    "FineTuneSegmenter": (_segmenter, "predict_proba", Y_MASKS),
}
DEFAULTS = {"PretrainedFeatureExtractor": PretrainedFeatureExtractor,
            "FineTuneClassifier": FineTuneClassifier,
            "FineTuneRegressor": FineTuneRegressor,
            "DomainAdaptationClassifier": DomainAdaptationClassifier,
            "FineTuneSegmenter": FineTuneSegmenter}


# Estimators whose outputs a Dask array cannot hold, and the reason they give.
NOT_ON_DASK = {"FineTuneSegmenter": "each mask has its image's own size"}


def _equal_params(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, nn.Module):
            sa, sb = va.state_dict(), vb.state_dict()
            if type(va) is not type(vb) or sa.keys() != sb.keys():
                return False
            if not all(torch.equal(sa[k], sb[k]) for k in sa):
                return False
        elif va != vb:
            return False
    return True


@pytest.fixture(params=sorted(ESTIMATORS))
def case(request):
    factory, method, y = ESTIMATORS[request.param]
    return request.param, factory, method, y


def test_init_only_stores_parameters(case):
    _, factory, _, _ = case
    est = factory()
    assert set(vars(est)) == set(est.get_params(deep=False))


def test_clone_gives_equal_unfitted_copy(case):
    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    copy = clone(est)
    assert _equal_params(copy.get_params(), est.get_params())
    with pytest.raises(NotFittedError):
        getattr(copy, method)(X_IMAGES)


def test_params_round_trip(case):
    _, factory, _, _ = case
    est = factory()
    params = est.get_params()
    est.set_params(**params)
    assert _equal_params(est.get_params(), params)
    est.set_params(batch_size=3)
    assert est.get_params()["batch_size"] == 3


def test_fit_returns_self_and_unfitted_raises(case):
    _, factory, method, y = case
    est = factory()
    with pytest.raises(NotFittedError):
        getattr(est, method)(X_IMAGES)
    assert est.fit(X_IMAGES, y) is est


def test_pickle_round_trip_gives_identical_output(case):
    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    before = getattr(est, method)(X_IMAGES)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(getattr(loaded, method)(X_IMAGES), before)


def test_export_restore_pair_recreates_the_fitted_estimator(case):
    """Every estimator shares the base and speaks exchange's protocol."""
    from sktransfer._base import ImageEstimator

    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    assert isinstance(est, ImageEstimator)
    assert set(ImageEstimator._parameter_constraints) <= set(est._parameter_constraints)
    module, prep, groups, fitted = est.__sktransfer_export__()
    fresh = clone(est)
    backbone = fresh.__sktransfer_architecture__(prep, groups)  # the architecture, no weights
    restored = fresh.__sktransfer_restore__(backbone, module.state_dict(), fitted)
    assert restored is fresh
    np.testing.assert_allclose(getattr(restored, method)(X_IMAGES),
                               getattr(est, method)(X_IMAGES), rtol=1e-5, atol=1e-6)


def test_tags_are_honest_about_image_input(case):
    _, factory, _, _ = case
    tags = factory().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    assert tags.input_tags.string is True
    assert tags.requires_fit is True


@pytest.mark.parametrize(
    "check",
    [
        sk_checks.check_no_attributes_set_in_init,
        sk_checks.check_parameters_default_constructible,
        sk_checks.check_get_params_invariance,
        sk_checks.check_set_params,
        sk_checks.check_do_not_raise_errors_in_init_or_set_params,
        sk_checks.check_estimator_cloneable,
        sk_checks.check_estimator_repr,
        sk_checks.check_mixin_order,
        sk_checks.check_estimator_tags_renamed,
        sk_checks.check_param_validation,
    ],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_sklearn_checks_that_apply(name, check):
    check(name, DEFAULTS[name]())


def test_dask_collections_give_the_in_memory_output(case):
    """Each output method takes a dask array lazily, with the declared dtype and width
    (Dask's synchronous scheduler here; tests/test_dask.py runs a real cluster)."""
    import dask
    import dask.array as da

    name, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    if name in NOT_ON_DASK:  # refused, with the reason, rather than computed wrongly
        with pytest.raises(TypeError, match=NOT_ON_DASK[name]):
            getattr(est, method)(da.from_array(X_IMAGES, chunks=3))
        return
    methods = [method, "predict"] if hasattr(est, "predict") else [method]
    for name in dict.fromkeys(methods):
        expected = getattr(est, name)(X_IMAGES)
        lazy = getattr(est, name)(da.from_array(X_IMAGES, chunks=3))
        assert isinstance(lazy, da.Array)
        assert lazy.dtype == expected.dtype and lazy.shape == expected.shape, name
        with dask.config.set(scheduler="sync"):
            computed = lazy.compute()
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(computed, expected)
