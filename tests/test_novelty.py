"""NoveltyDetector: scores, threshold, class conditioning, exchange, errors, sklearn contract.

Seeded numpy embeddings only (no network, no torch).
"""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sktransfer import _novelty
from sktransfer._novelty import NoveltyDetector

METHODS = ["mahalanobis", "knn"]


def blobs(n_per_class=60, n_features=20, n_classes=2, gap=6.0, seed=0):
    """Gaussian classes along the first axis, ``gap`` apart (unit variance), away from the
    origin as a network's (non-negative) embeddings are."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    Z = 3.0 + rng.normal(size=(len(y), n_features))
    Z[:, 0] += gap * y
    return Z, y


def draw(n, n_features, seed):
    """A Gaussian with unequal variances and a non-zero mean."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.3, 3.0, n_features)
    return 2.0 + rng.normal(size=(n, n_features)) * scales


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("labelled", [True, False])
def test_far_points_score_lower_than_training_like_points(method, labelled):
    Z, y = blobs()
    det = NoveltyDetector(method).fit(Z, y if labelled else None)
    fresh, _ = blobs(seed=1)
    far = fresh + np.r_[0.0, 12.0, np.zeros(Z.shape[1] - 2)]  # off the clouds
    assert det.score_samples(fresh).min() > np.median(det.score_samples(far))
    assert np.mean(det.predict(fresh) == 1) > 0.85
    assert np.all(det.predict(far) == -1)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("keep_rate", [0.8, 0.95, 1.0])
def test_threshold_keeps_keep_rate_of_training_and_of_fresh_draws(method, keep_rate):
    # fewer images than features: in-sample Mahalanobis distances are far too small,
    # only held-out training scores set a threshold that fresh draws meet
    n, d = 200, 250
    Z = draw(n, d, seed=0)
    det = NoveltyDetector(method, keep_rate=keep_rate).fit(Z)
    kept_train = np.mean(det.training_scores_ >= det.offset_)
    assert keep_rate <= kept_train <= keep_rate + 1 / n
    kept_fresh = np.mean(det.predict(draw(1000, d, seed=1)) == 1)
    assert abs(kept_fresh - keep_rate) < (0.07 if keep_rate < 1 else 0.02)


def test_threshold_is_the_order_statistic():
    scores = np.arange(20.0)
    assert _novelty._threshold(scores, 0.95) == 1.0  # 19 of 20 at or above
    assert _novelty._threshold(scores, 1.0) == 0.0
    assert _novelty._threshold(scores, 0.01) == 19.0  # at least one is kept


def test_labels_make_the_gap_between_classes_novel():
    # two classes, each a little stronger on its half of the features (close in angle,
    # as a network's non-negative embeddings are); the gap: a little stronger on both
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    Z = 10 + 0.3 * rng.normal(size=(200, 50))
    Z[y == 0, :25] += 0.7
    Z[y == 1, 25:] += 0.7
    middle = 10.35 + 0.3 * rng.normal(size=(40, 50))
    assert np.all(NoveltyDetector().fit(Z, y).predict(middle) == -1)
    # the one Gaussian's centre: kept, but for the 5% any fresh draw may lose
    assert np.mean(NoveltyDetector().fit(Z).predict(middle) == 1) >= 0.9
    labelled = NoveltyDetector().fit(Z, y)
    assert labelled.means_.shape == (2, Z.shape[1])
    np.testing.assert_array_equal(labelled.classes_, [0, 1])
    assert NoveltyDetector().fit(Z).classes_ is None


def unit(Z):
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def test_mahalanobis_matches_ledoit_wolf_on_normalised_class_centred_data():
    Z, y = blobs(n_per_class=30, n_features=80, n_classes=3)
    det = NoveltyDetector().fit(Z, y)
    means = np.stack([unit(Z)[y == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(det.means_, means)
    centred = unit(Z) - means[y]
    assert det.shrinkage_ == pytest.approx(ledoit_wolf_shrinkage(centred,
                                                                 assume_centered=True))
    lw = LedoitWolf(assume_centered=True).fit(centred)
    queries = 3 + np.random.default_rng(5).normal(size=(10, 80)) * 3
    expected = -np.sqrt(np.min([lw.mahalanobis(unit(queries) - m) for m in means], axis=0))
    np.testing.assert_allclose(det.score_samples(queries), expected, rtol=1e-9)
    np.testing.assert_allclose(det.score_samples(5 * queries), expected, rtol=1e-9)
    # many images, few features: little shrinkage, still the exact distance
    Z, y = blobs(n_per_class=200, n_features=3)
    det = NoveltyDetector().fit(Z)
    lw = LedoitWolf().fit(unit(Z))
    np.testing.assert_allclose(det.score_samples(Z[:5]),
                               -np.sqrt(lw.mahalanobis(unit(Z[:5]))))


def test_knn_is_the_distance_to_the_kth_neighbour_after_l2_normalisation():
    rng = np.random.default_rng(0)
    Z, Q = rng.normal(size=(30, 8)), rng.normal(size=(4, 8))
    det = NoveltyDetector("knn", n_neighbors=3).fit(Z)
    distances = np.sort(np.linalg.norm(unit(Q)[:, None] - unit(Z)[None], axis=2), axis=1)
    np.testing.assert_allclose(det.score_samples(Q), -distances[:, 2], atol=1e-12)
    np.testing.assert_allclose(det.score_samples(3 * Q), det.score_samples(Q), atol=1e-12)


def test_knn_training_scores_leave_out_the_point_and_its_duplicates():
    Z = draw(80, 10, seed=0)
    once = NoveltyDetector("knn", n_neighbors=1).fit(Z)
    twice = NoveltyDetector("knn", n_neighbors=1).fit(np.vstack([Z, Z]))
    assert once.offset_ < 0 and twice.offset_ == once.offset_
    np.testing.assert_array_equal(twice.training_scores_, np.r_[once.training_scores_,
                                                                once.training_scores_])
    fresh = draw(500, 10, seed=1)
    assert abs(np.mean(twice.predict(fresh) == 1) - 0.95) < 0.06


def test_knn_lowers_n_neighbors_beyond_the_training_set_with_a_warning():
    Z = draw(12, 6, seed=0)
    with pytest.warns(UserWarning, match=r"n_neighbors=20 is more than the 7 other .*"
                                         r"n_neighbors_=7"):
        det = NoveltyDetector("knn").fit(np.vstack([Z[:8], Z[:4]]))  # 8 distinct
    assert det.n_neighbors_ == 7 and det.get_params()["n_neighbors"] == 20
    assert NoveltyDetector("knn").fit(draw(30, 6, seed=0)).n_neighbors_ == 20
    assert NoveltyDetector().fit(Z).n_neighbors_ is None


@pytest.mark.parametrize("method", METHODS)
def test_predict_and_decision_function_follow_the_scores(method):
    Z, y = blobs()
    det = NoveltyDetector(method).fit(Z, y)
    Q = blobs(n_per_class=25, seed=3)[0]
    Q[::2] += 2 * np.random.default_rng(3).normal(size=Q[::2].shape)  # half of them off
    scores, decision, labels = det.score_samples(Q), det.decision_function(Q), det.predict(Q)
    np.testing.assert_array_equal(decision, scores - det.offset_)
    assert labels.dtype.kind == "i" and set(labels) == {-1, 1}
    np.testing.assert_array_equal(labels, np.where(decision >= 0, 1, -1))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("labels", [None, "str", "int"])
def test_fitted_state_round_trip_scores_identically(method, labels):
    Z, y = blobs(n_features=12, n_classes=3)
    y = {None: None, "str": np.array(["cat", "dog", "eel"])[y], "int": y * 10}[labels]
    det = NoveltyDetector(method, keep_rate=0.9, n_neighbors=3).fit(Z, y)
    values, arrays = det._fitted_state()
    values = json.loads(json.dumps(values))  # JSON-ready
    assert all(a.dtype == np.float64 for a in arrays.values())
    back = NoveltyDetector._from_fitted_state(det.get_params(), values, dict(arrays))
    Q = np.random.default_rng(1).normal(size=(40, 12)) * 4
    np.testing.assert_array_equal(back.score_samples(Q), det.score_samples(Q))
    np.testing.assert_array_equal(back.predict(Q), det.predict(Q))
    assert back.offset_ == det.offset_ and back.get_params() == det.get_params()
    np.testing.assert_array_equal(back.training_scores_, det.training_scores_)
    if det.classes_ is not None:
        np.testing.assert_array_equal(back.classes_, det.classes_)
        assert back.classes_.dtype == det.classes_.dtype
    with pytest.raises(ValueError, match="method"):
        other = "knn" if method == "mahalanobis" else "mahalanobis"
        NoveltyDetector._from_fitted_state({"method": other}, values, arrays)


def test_fitted_state_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    Z, _ = blobs(n_features=4)
    frame = pd.DataFrame(Z, columns=["a", "b", "c", "d"])
    det = NoveltyDetector().fit(frame)
    back = NoveltyDetector._from_fitted_state(det.get_params(), *det._fitted_state())
    np.testing.assert_array_equal(back.feature_names_in_, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(back.score_samples(frame), det.score_samples(frame))


def test_errors_name_the_offending_item():
    Z, y = blobs()
    with pytest.raises(ValueError, match="method"):
        NoveltyDetector("mahalanobiss").fit(Z)
    with pytest.raises(ValueError, match="keep_rate"):
        NoveltyDetector(keep_rate=0.0).fit(Z)
    with pytest.raises(ValueError, match="keep_rate"):
        NoveltyDetector(keep_rate=True).fit(Z)
    with pytest.raises(ValueError, match="n_neighbors"):
        NoveltyDetector("knn", n_neighbors=0).fit(Z)
    with pytest.raises(ValueError, match=r"single class \('a'\)"):
        NoveltyDetector().fit(Z, ["a"] * len(Z))
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[120, 119\]"):
        NoveltyDetector().fit(Z, y[:-1])
    with pytest.raises(ValueError, match="continuous"):
        NoveltyDetector().fit(Z, Z[:, 0])
    bad = Z.copy()
    bad[3, 1], bad[7, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity in 2 of 120 embeddings \(rows 3, 7\)"):
        NoveltyDetector().fit(bad)
    det = NoveltyDetector("knn").fit(Z)
    with pytest.raises(ValueError, match=r"NaN or infinity in 2 of 120 embeddings"):
        det.predict(bad)
    with pytest.raises(ValueError, match="X has 5 features, but NoveltyDetector is "
                                         "expecting 20 features"):
        det.score_samples(Z[:, :5])
    with pytest.raises(ValueError, match="at least 2 distinct training embeddings"):
        NoveltyDetector("knn").fit(np.vstack([Z[:1], 2 * Z[:1]]))
    with pytest.raises(ValueError, match="knn.*n_features=1"):
        NoveltyDetector("knn").fit(Z[:, :1])
    with pytest.raises(ValueError, match="n_samples=1"):
        NoveltyDetector().fit(Z[:1])
    with pytest.raises(NotFittedError):
        NoveltyDetector().predict(Z)
    failed = NoveltyDetector()
    with pytest.raises(ValueError, match="single class"):
        failed.fit(Z, [1] * len(Z))
    with pytest.raises(NotFittedError):  # a failed fit leaves nothing fitted behind
        failed.predict(Z)


def test_clone_and_get_params():
    det = NoveltyDetector("knn", keep_rate=0.9, n_neighbors=7)
    assert det.get_params() == {"method": "knn", "keep_rate": 0.9, "n_neighbors": 7}
    copy = clone(det.fit(blobs()[0]))
    assert copy.get_params() == det.get_params() and not hasattr(copy, "offset_")
    with pytest.raises(TypeError):
        NoveltyDetector("knn", 0.9)  # keyword-only after method


def test_pipeline_after_a_transformer_passes_labels_through():
    Z, y = blobs(n_features=10)
    pipe = Pipeline([("scale", StandardScaler()), ("novelty", NoveltyDetector())]).fit(Z, y)
    direct = NoveltyDetector().fit(StandardScaler().fit_transform(Z), y)
    Q = np.random.default_rng(2).normal(size=(20, 10)) * 3
    scaled = pipe["scale"].transform(Q)
    np.testing.assert_array_equal(pipe.score_samples(Q), direct.score_samples(scaled))
    np.testing.assert_array_equal(pipe.predict(Q), direct.predict(scaled))
    np.testing.assert_array_equal(pipe.decision_function(Q), direct.decision_function(scaled))


def test_import_does_not_load_torch():
    code = "import sys, sktransfer._novelty; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_docstring_example_runs():
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(NoveltyDetector, "NoveltyDetector"):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


@parametrize_with_checks([NoveltyDetector(), NoveltyDetector("knn")])
def test_sklearn_contract(estimator, check):
    check(estimator)
