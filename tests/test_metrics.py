"""The expected calibration error, its scorer and the reliability diagram."""

from __future__ import annotations

import doctest
import sys

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import KFold, cross_val_score

from sktransfer import metrics
from sktransfer.metrics import (
    expected_calibration_error,
    expected_calibration_error_scorer,
    plot_reliability,
    reliability_curve,
)

# 3 classes, 2 uniform bins [0, 0.5) and [0.5, 1]
PROB = np.array([
    [0.40, 0.30, 0.30],  # bin 0, conf 0.40, predicts 0, true 0: right
    [0.35, 0.33, 0.32],  # bin 0, conf 0.35, predicts 0, true 1: wrong
    [1.00, 0.00, 0.00],  # bin 1, conf 1.00 (the last bin holds 1.0), true 0: right
    [0.50, 0.25, 0.25],  # bin 1, conf 0.50 (the lower edge), predicts 0, true 2: wrong
    [0.05, 0.90, 0.05],  # bin 1, conf 0.90, predicts 1, true 1: right
    [0.20, 0.60, 0.20],  # bin 1, conf 0.60, predicts 1, true 0: wrong
])
TRUE = np.array([0, 1, 0, 2, 1, 0])


def test_ece_equals_the_hand_computed_value():
    bin0 = 2 / 6 * abs(1 / 2 - (0.40 + 0.35) / 2)  # accuracy 1/2, confidence 0.375
    bin1 = 4 / 6 * abs(2 / 4 - (1.0 + 0.5 + 0.9 + 0.6) / 4)  # accuracy 1/2, confidence 0.75
    assert bin0 + bin1 == pytest.approx(0.125 / 3 + 0.25 * 2 / 3)
    assert expected_calibration_error(TRUE, PROB, n_bins=2) == pytest.approx(bin0 + bin1)
    accuracy, confidence, share, edges = reliability_curve(TRUE, PROB, n_bins=2)
    np.testing.assert_allclose(accuracy, [0.5, 0.5])
    np.testing.assert_allclose(confidence, [0.375, 0.75])
    np.testing.assert_allclose(share, [2 / 6, 4 / 6])
    np.testing.assert_allclose(edges, [0, 0.5, 1])


def test_empty_bins_are_nan_and_count_nowhere():
    accuracy, confidence, share, _ = reliability_curve(TRUE, PROB, n_bins=4)
    assert np.isnan(accuracy[0]) and np.isnan(confidence[0]) and share[0] == 0
    assert share.sum() == pytest.approx(1)
    assert np.isfinite(expected_calibration_error(TRUE, PROB, n_bins=4))


def test_binary_1d_and_two_columns_agree():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    p[:3] = [0.5, 0.0, 1.0]  # a tie predicts the negative class in both forms
    y = np.where(rng.uniform(size=200) < p, "pos", "neg")
    for strategy in ("uniform", "quantile"):
        one = expected_calibration_error(y, p, n_bins=7, strategy=strategy)
        two = expected_calibration_error(y, np.column_stack([1 - p, p]), n_bins=7,
                                         strategy=strategy)
        column = expected_calibration_error(y, p[:, None], n_bins=7, strategy=strategy)
        assert one == pytest.approx(two) and one == pytest.approx(column)
    # the positive class is labels[1] (ties left out: a tie predicts labels[0])
    assert expected_calibration_error(y[1:], 1 - p[1:], labels=["pos", "neg"]) == \
        pytest.approx(expected_calibration_error(y[1:], p[1:]))


def test_calibrated_sample_scores_near_zero_and_overconfident_one_high():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # P(y = 1) is exactly p
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, p, strategy="quantile") < 0.02
    logit = np.log(p / (1 - p))
    sharpened = 1 / (1 + np.exp(-4 * logit))  # same ranking, far too confident
    assert expected_calibration_error(y, sharpened) > 0.1


def test_labels_order_names_the_columns():
    y = np.array(["cat", "dog", "dog", "cat", "dog"])
    p_cat = np.array([0.9, 0.2, 0.7, 0.6, 0.45])
    prob = np.column_stack([p_cat, 1 - p_cat])  # columns: cat, dog
    expected = expected_calibration_error(y, prob, n_bins=5)  # sorted labels: cat, dog
    assert expected_calibration_error(y, prob, n_bins=5, labels=["cat", "dog"]) == expected
    assert expected_calibration_error(y, prob[:, ::-1], n_bins=5,
                                      labels=["dog", "cat"]) == pytest.approx(expected)
    assert expected_calibration_error(y, prob, n_bins=5, labels=["dog", "cat"]) != \
        pytest.approx(expected)


def test_labels_allow_a_class_absent_from_y_true():
    with pytest.raises(ValueError, match="3 columns but y_true holds 2 classes"):
        expected_calibration_error([0, 0, 1], PROB[:3])
    value = expected_calibration_error([0, 0, 1], PROB[:3], labels=[0, 1, 2])
    assert 0 <= value <= 1


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_sample_weight_equals_repetition(strategy):
    rng = np.random.default_rng(2)
    prob = rng.dirichlet([1, 1, 1], size=60)
    y = rng.integers(0, 3, size=60)
    weight = rng.integers(0, 4, size=60)
    weighted = expected_calibration_error(y, prob, n_bins=5, strategy=strategy,
                                          sample_weight=weight)
    repeated = expected_calibration_error(np.repeat(y, weight), np.repeat(prob, weight, 0),
                                          n_bins=5, strategy=strategy)
    assert weighted == pytest.approx(repeated)


def test_quantile_bins_hold_equal_counts():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.0, size=400) ** 3  # skewed confidences
    y = rng.integers(0, 2, size=400)
    _, _, share, edges = reliability_curve(y, p, n_bins=4, strategy="quantile")
    np.testing.assert_allclose(share, 0.25)
    confidence = np.maximum(p, 1 - p)
    assert edges[0] == confidence.min() and edges[-1] == confidence.max()
    assert np.all(np.diff(edges) >= 0)
    _, _, uniform_share, _ = reliability_curve(y, p, n_bins=4)
    assert not np.allclose(uniform_share, 0.25)


@pytest.mark.parametrize("kwargs, message", [
    (dict(y_prob=[[0.5, 0.4], [0.5, 0.5]], y_true=[0, 1]), "row 0 of y_prob sums to 0.9"),
    (dict(y_prob=[[0.5, 0.5], [1.2, -0.2]], y_true=[0, 1]), r"y_prob\[1, 0\] = 1.2"),
    (dict(y_prob=[0.5, np.nan], y_true=[0, 1]), r"y_prob\[1\] = nan"),
    (dict(y_prob=[0.5, 0.5, 0.5], y_true=[0, 1]), "y_true has 2 samples but y_prob has 3"),
    (dict(y_prob=[[0.5, 0.5]] * 2, y_true=[0, 2], labels=[0, 1]),
     r"y_true\[1\] = 2 is not among the labels"),
    (dict(y_prob=[[0.5, 0.5]] * 2, y_true=[0, 1], labels=[0, 1, 2]),
     "2 columns but there are labels; got 3"),
    (dict(y_prob=[0.5, 0.5], y_true=[1, 1]), "y_true holds 1 class"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], labels=[0, 0]), "distinct labels"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], sample_weight=[1, -1]), r"sample_weight\[1\]"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], sample_weight=[1]), "sample_weight has shape"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], sample_weight=[0, 0]), "sums to 0"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], n_bins=0), "n_bins must be a positive"),
    (dict(y_prob=[0.5, 0.5], y_true=[0, 1], strategy="equal"), "strategy must be"),
    (dict(y_prob=np.zeros((2, 2, 2)), y_true=[0, 1]), "y_prob must be of shape"),
    (dict(y_prob=[], y_true=[]), "y_true is empty"),
])
def test_errors_name_the_offending_item(kwargs, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(**kwargs)


def test_scorer_in_cross_val_score_is_minus_the_ece_of_each_fold():
    X, y = make_classification(n_samples=90, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    y = np.array(["a", "b", "c"])[y]
    no_c = np.flatnonzero(y != "c")[:20]  # a test fold without class "c"
    cv = [(np.setdiff1d(np.arange(90), no_c), no_c), *KFold(3).split(X)]
    scores = cross_val_score(LogisticRegression(max_iter=200), X, y, cv=cv,
                             scoring=expected_calibration_error_scorer,
                             error_score="raise")
    by_hand = []
    for train, test in cv:
        fitted = LogisticRegression(max_iter=200).fit(X[train], y[train])
        by_hand.append(-expected_calibration_error(
            y[test], fitted.predict_proba(X[test]), labels=fitted.classes_))
    np.testing.assert_allclose(scores, by_hand)
    assert np.all(scores < 0)
    # why not make_scorer: it cannot pass the fitted classes_ as labels
    naive = make_scorer(expected_calibration_error, greater_is_better=False,
                        response_method="predict_proba")
    with pytest.raises(ValueError, match="pass labels="):
        naive(fitted.fit(X[cv[0][0]], y[cv[0][0]]), X[no_c], y[no_c])


def test_scorer_on_a_binary_classifier():
    X, y = make_classification(n_samples=60, n_features=4, random_state=1)
    y = np.where(y == 1, "yes", "no")
    clf = LogisticRegression().fit(X[:40], y[:40])
    score = expected_calibration_error_scorer(clf, X[40:], y[40:])
    assert score == -expected_calibration_error(y[40:], clf.predict_proba(X[40:])[:, 1],
                                                labels=clf.classes_)


def test_the_docstring_examples_run():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plot_reliability_draws_one_point_and_bar_per_filled_bin(pyplot, tmp_path):
    ax = plot_reliability(TRUE, PROB, n_bins=4, label="model")
    filled = int(np.sum(reliability_curve(TRUE, PROB, n_bins=4)[2] > 0))
    assert filled == 3
    curve = [line for line in ax.get_lines() if line.get_label().startswith("model")]
    assert len(curve) == 1 and len(curve[0].get_xdata()) == filled
    assert len(ax.containers) == 1 and len(ax.containers[0]) == filled
    ece = expected_calibration_error(TRUE, PROB, n_bins=4)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["perfectly calibrated", f"model (ECE {ece:.3f})"]
    ax.figure.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_reliability_overlays_curves_on_one_ax(pyplot):
    rng = np.random.default_rng(4)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    _, ax = pyplot.subplots()
    assert plot_reliability(y, p ** 0.3, ax=ax, label="before") is ax
    plot_reliability(y, p, ax=ax, label="after")
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(legend) == 3 and legend[0] == "perfectly calibrated"  # one diagonal
    assert legend[1].startswith("before (ECE") and legend[2].startswith("after (ECE")
    assert len(ax.containers) == 2
    colours = [line.get_color() for line in ax.get_lines()[1:]]
    assert colours[0] != colours[1]


def test_plot_reliability_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[plot\]'"):
        plot_reliability(TRUE, PROB)
