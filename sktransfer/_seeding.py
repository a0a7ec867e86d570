"""Randomness from ``random_state``, never from torch's global random state.

scikit-learn's rule: an estimator with randomness takes ``random_state`` (None: fresh
randomness; an int: the same result in any process and on any joblib backend). Torch draws
random initialisations from its global generator; :func:`seeded` runs a block on a private,
seeded copy of it and leaves the caller's state as it was.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from sklearn.utils import check_random_state


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (``True``/``False`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def seed_from(random_state: int | np.random.RandomState | None) -> int:
    """The seed a call uses: ``random_state`` itself when an int, else drawn from it."""
    if is_int(random_state):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


@contextlib.contextmanager
def seeded(random_state: int | np.random.RandomState | None,
           devices: Sequence[torch.device] = ()) -> Iterator[int]:
    """Run the block with torch's generators seeded from ``random_state``; yields the seed.

    The CPU generator (and those of ``devices``, e.g. the CUDA device a network is built
    on) are forked: the caller's random state is restored afterwards.
    """
    seed = seed_from(random_state)
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(seed)
        yield seed
