"""Unsupervised signals of how well a classifier fits unlabelled images, from its
predicted probabilities alone: what domain adaptation can be judged by when the target
has no labels.

Each returns a number where higher means "looks better": the mean negative entropy of
the predictions (confidence), the information maximisation score (confident *and*
diverse), and the soft neighbourhood density of Saito et al. (2021).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _proba(proba: object, min_rows: int = 1) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) < min_rows:
        raise ValueError(f"need predicted probabilities of shape (n_samples >= "
                         f"{min_rows}, n_classes), got shape {p.shape}")
    return p


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log(p + _EPS)).sum(axis=axis)


def negative_entropy(proba: object) -> float:
    """``-mean_i H(p_i)``: 0 for certain predictions, ``-log(n_classes)`` for uniform ones.

    It rewards confidence, including a collapse onto one class.
    """
    return float(-_entropy(_proba(proba)).mean())


def information_maximization(proba: object) -> float:
    """``H(mean_i p_i) - mean_i H(p_i)``: the mutual information between images and
    predicted classes (Shi & Sha 2012; SHOT's objective, Liang et al. 2020).

    High when each prediction is confident and the classes are used evenly: a collapse
    onto one class scores 0, as do uniform predictions.
    """
    p = _proba(proba)
    return float(_entropy(p.mean(axis=0)) - _entropy(p).mean())


def soft_neighborhood_density(proba: object, temperature: float = 0.05) -> float:
    """Soft neighbourhood density (SND, Saito et al. 2021).

    Each image's similarity to every other (cosine of their L2-normalised probability
    vectors, over ``temperature``) becomes a soft distribution over its neighbours; the
    score is its mean entropy. Dense, well-clustered predictions spread each image's
    neighbourhood over many neighbours (high entropy); predictions that scatter between
    classes, or a few isolated points, score low. Entropy grows with the number of
    images, so compare scores on the same images only. Needs 2 images at least.
    """
    p = _proba(proba, min_rows=2)
    f = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), _EPS)
    total = 0.0
    for start in range(0, len(f), 1024):  # rows in chunks: memory O(1024 * n)
        sim = f[start:start + 1024] @ f.T / temperature
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # not one's own neighbour
        sim -= sim.max(axis=1, keepdims=True)
        w = np.exp(sim)
        w /= w.sum(axis=1, keepdims=True)
        total += float(_entropy(w).sum())
    return total / len(f)


SIGNALS = {"entropy": negative_entropy, "im": information_maximization,
           "snd": soft_neighborhood_density}
