"""Declared parameter constraints, checked by scikit-learn's own parameter validation.

Each estimator declares ``_parameter_constraints`` (as ``sklearn/linear_model/_logistic.py``
does) built from the shared pieces below, and decorates ``fit`` with :func:`fit_context`;
scikit-learn then rejects a bad value with ``InvalidParameterError`` (a ValueError and a
TypeError) naming the parameter, the accepted values and the value given. Only checks
that involve several parameters or the data stay in the estimators.

scikit-learn's validation helpers are private modules; they are imported here only, so a
change in them is fixed in one place (they exist unchanged in scikit-learn 1.6 to 1.9).
"""

from __future__ import annotations

import os
from numbers import Integral

import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from torch import nn

__all__ = ["BACKBONE", "CACHE", "NON_NEGATIVE", "PATH", "POSITIVE", "Count", "Interval",
           "Numbers", "StrOptions", "check_param", "check_params", "fit_context", "options"]


class Numbers(Interval):
    """A numeric interval that refuses booleans (``True`` is not a batch size or a rate)."""

    def is_satisfied_by(self, val: object) -> bool:
        return not isinstance(val, bool) and super().is_satisfied_by(val)


class Count(Numbers):
    """Integers from ``left`` to ``right`` (inclusive; no upper bound when None)."""

    def __init__(self, left: int, right: int | None = None):
        super().__init__(Integral, left, right, closed="both" if right is not None else "left")


def check_param(estimator, name: str) -> None:
    """Check one declared parameter outside ``fit`` (one read again at predict time)."""
    validate_parameter_constraints(
        {name: estimator._parameter_constraints[name]}, {name: getattr(estimator, name)},
        caller_name=type(estimator).__name__)


def check_params(estimator) -> None:
    """Check every declared parameter outside ``fit`` (a method such as ``lr_find`` that
    trains without going through ``fit``)."""
    estimator._validate_params()


def fit_context(method):
    """Validate the declared parameters before ``method`` runs (scikit-learn's own)."""
    return _fit_context(prefer_skip_nested_validation=True)(method)


POSITIVE = Count(1)
NON_NEGATIVE = Count(0)
PATH = [str, os.PathLike]

# What every estimator built on a backbone takes.
BACKBONE = {
    "model": [str, nn.Module],
    "weights": [*PATH, None],
    "image_size": [POSITIVE, None],
    "resize_size": [POSITIVE, None],
    "mean": ["array-like", None],
    "std": ["array-like", None],
    "batch_size": [POSITIVE],
    "device": [str, torch.device],
    "precision": [StrOptions({"auto", "float32", "bfloat16", "float16"})],
    "verbose": ["verbose"],
}

CACHE = [*PATH, HasMethods(["cache"]), None]  # a folder or a joblib.Memory


def options(values) -> StrOptions:
    """One of the strings in ``values``."""
    return StrOptions(set(values))
