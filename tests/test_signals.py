"""The unsupervised signals on predicted probabilities, and the information maximisation
scorer on the unlabelled rows of a fitted classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sktransfer import information_maximization_scorer
from sktransfer._signals import (
    information_maximization,
    negative_entropy,
    soft_neighborhood_density,
)

CONFIDENT = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]] * 0.96 + 0.01  # confident, every class
COLLAPSED = np.tile([0.97, 0.01, 0.01, 0.01], (8, 1))  # confident, one class
UNIFORM = np.full((8, 4), 0.25)


def test_entropy_rewards_confidence_even_a_collapse():
    assert negative_entropy(UNIFORM) == pytest.approx(-math.log(4))
    assert negative_entropy(COLLAPSED) == pytest.approx(negative_entropy(CONFIDENT))
    assert negative_entropy(CONFIDENT) > -0.2


def test_information_maximization_needs_confident_and_diverse_predictions():
    assert information_maximization(CONFIDENT) > 1.0
    assert information_maximization(COLLAPSED) == pytest.approx(0.0, abs=1e-9)
    assert information_maximization(UNIFORM) == pytest.approx(0.0, abs=1e-9)
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    h = lambda q: -(q * np.log(q)).sum(axis=-1)  # noqa: E731
    assert information_maximization(p) == pytest.approx(h(p.mean(axis=0)) - h(p).mean())


def test_soft_neighborhood_density_is_the_entropy_of_soft_neighbourhoods():
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=5)
    f = p / np.linalg.norm(p, axis=1, keepdims=True)
    sim = f @ f.T / 0.05
    np.fill_diagonal(sim, -np.inf)
    w = np.exp(sim - sim.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    expected = float(np.mean(-(w * np.log(w + 1e-12)).sum(axis=1)))
    assert soft_neighborhood_density(p) == pytest.approx(expected)
    # identical predictions: every neighbour as near, the entropy is log(n - 1)
    assert soft_neighborhood_density(UNIFORM) == pytest.approx(math.log(7))


def test_signals_refuse_what_is_not_a_batch_of_probabilities():
    with pytest.raises(ValueError, match=r"n_samples >= 1, n_classes\), got shape \(4,\)"):
        information_maximization(np.ones(4))
    one = np.array([[0.2, 0.8]])
    assert information_maximization(one) == pytest.approx(0.0, abs=1e-12)  # one row
    assert negative_entropy(one) < 0
    with pytest.raises(ValueError, match="n_samples >= 2"):
        soft_neighborhood_density(one)  # no neighbour


class _Fixed:
    """A fitted classifier stand-in: fixed probabilities per image (its first pixel)."""

    def predict_proba(self, X):
        from sktransfer.images import as_image_source

        source = as_image_source(X)
        rows = [int(np.asarray(source.read(i))[0, 0, 0]) for i in range(len(source))]
        return np.vstack([CONFIDENT, COLLAPSED])[rows]


def test_the_scorer_scores_the_unlabelled_rows_only():
    X = np.zeros((16, 4, 4, 3), dtype=np.uint8)
    X[:, 0, 0, 0] = np.arange(16)  # rows 0-7 confident and diverse, 8-15 collapsed
    y = np.r_[-np.ones(8, dtype=int), np.zeros(8, dtype=int)]
    assert information_maximization_scorer(_Fixed(), X, y) == pytest.approx(
        information_maximization(CONFIDENT))
    y_flipped = np.r_[np.zeros(8, dtype=int), -np.ones(8, dtype=int)]
    assert information_maximization_scorer(_Fixed(), X, y_flipped) == pytest.approx(
        0.0, abs=1e-9)
    with pytest.raises(ValueError, match="information_maximization_scorer scores unlabelled"):
        information_maximization_scorer(_Fixed(), X, np.zeros(16, dtype=int))
