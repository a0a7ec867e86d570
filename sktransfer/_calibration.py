"""Temperature scaling: one number, fitted on held-out logits, that calibrates probabilities.

Guo et al. (2017), "On calibration of modern neural networks": divide the logits by a
temperature ``T`` fitted to minimise the negative log-likelihood of held-out labels (here
with Laplace-smoothed labels by default for the estimators: a validation split of a few
dozen images that the model classifies without a mistake would otherwise drive ``T``
towards 0, and measured, the smoothing lowered the test log-loss on every in-distribution
run, see ``benchmarks/bench_trust.py``). For
one view, ``softmax(z / T)``; this module applies it to probabilities as
``p ** (1 / T)`` renormalised (multi-label: ``sigmoid(logit(p) / T)``), which is the same
thing for one view (up to float32 underflow: a probability that rounded to 0, a logit gap
beyond about 100, stays 0) and, for the average of several test-time views, calibrates
the average while keeping its ranking, so the predicted class never changes.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax
from torch import nn

# Temperatures searched (log-uniformly): beyond them a model is either constant or hard.
T_RANGE = (0.05, 20.0)


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray,
                            weights: np.ndarray | None = None, multilabel: bool = False,
                            temperature: float = 1.0, smoothing: float = 0.0) -> float:
    """The (weighted) mean NLL of ``targets`` under ``logits / temperature``.

    Single-label: cross-entropy of the class indices ``targets``; multi-label: binary
    cross-entropy summed over labels, averaged over images. ``smoothing`` moves that
    share of each target's weight to the uniform distribution (label smoothing).
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    if multilabel:
        t = np.asarray(targets, dtype=np.float64) * (1 - smoothing) + smoothing / 2
        # log sigmoid(z) = -log(1 + exp(-z)), stably
        per_image = (t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z)).sum(axis=1)
    else:
        log_p = log_softmax(z, axis=1)
        per_image = -(1 - smoothing) * log_p[np.arange(len(z)), np.asarray(targets)]
        if smoothing:
            per_image -= smoothing * log_p.mean(axis=1)
    return float(np.average(per_image, weights=weights))


def fit_temperature(logits: np.ndarray, targets: np.ndarray,
                    weights: np.ndarray | None = None, multilabel: bool = False,
                    smoothing: float | None = 0.0) -> float:
    """The temperature minimising the held-out NLL (bounded search over ``log T``).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_outputs)
        Raw outputs of the network on held-out images.
    targets : ndarray
        Class indices (single-label) or the 0/1 indicator matrix (multi-label).
    weights : ndarray of shape (n_samples,), default=None
        Sample weights of the held-out images.
    multilabel : bool, default=False
        Sigmoid outputs (binary cross-entropy) instead of softmax.
    smoothing : float or None, default=0.0
        Label smoothing of the held-out targets; None: ``1 / (n + 2)`` for ``n`` held-out
        images (Laplace's rule of succession: ``n`` right answers out of ``n`` do not
        make the next one certain), which keeps a small validation set that the model
        classifies perfectly from driving the temperature to 0.

    Returns
    -------
    temperature : float
        In ``T_RANGE``; 1.0 when no temperature lowers the NLL (e.g. constant logits).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(logits).all():
        raise ValueError("the held-out logits are not all finite; cannot fit a temperature")

    if smoothing is None:
        smoothing = 1.0 / (len(logits) + 2)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(logits, targets, weights, multilabel, np.exp(log_t),
                                       smoothing)

    lo, hi = np.log(T_RANGE)
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                             options={"xatol": 1e-4})
    temperature = float(np.exp(result.x))
    # never worse than leaving the probabilities alone
    return temperature if nll(result.x) < nll(0.0) else 1.0


def calibrate(proba: np.ndarray, temperature: float, multilabel: bool = False) -> np.ndarray:
    """Probabilities at ``temperature``: ``p ** (1/T)`` renormalised, or, for multi-label
    outputs, ``sigmoid(logit(p) / T)``; unchanged (the same array) when ``T == 1``."""
    if temperature == 1.0:
        return proba
    p = np.asarray(proba, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    if multilabel:
        p = np.clip(p, tiny, 1 - 1e-16)
        out = expit((np.log(p) - np.log1p(-p)) / temperature)
    else:
        log_p = np.log(np.maximum(p, tiny)) / temperature
        log_p -= log_p.max(axis=1, keepdims=True)
        out = np.exp(log_p)
        out /= out.sum(axis=1, keepdims=True)
        out[p == 0] = 0.0  # a class the network gives no chance keeps none
    return out.astype(proba.dtype, copy=False)


class Calibrated(nn.Module):
    """``network``'s probabilities at a fitted temperature, as :func:`calibrate` computes
    them (for deployment: one graph from images to calibrated probabilities)."""

    def __init__(self, network: nn.Module, temperature: float, multilabel: bool):
        super().__init__()
        self.network = network
        self.register_buffer("inverse", torch.tensor(1.0 / float(temperature)))
        self.multilabel = multilabel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.network(images).float()
        tiny = torch.finfo(torch.float32).tiny
        if self.multilabel:
            p = p.clamp(tiny, 1 - 1e-7)
            return torch.sigmoid((torch.log(p) - torch.log1p(-p)) * self.inverse)
        return torch.softmax(torch.log(p.clamp_min(tiny)) * self.inverse, dim=-1)

