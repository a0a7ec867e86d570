"""What must survive an interrupted fine-tuning: best weights so far, and checkpoints.

:class:`TrainingState` is a skorch callback that, at the end of every epoch, keeps a copy
of the best weights so far (lowest validation loss, or the last completed epoch when
there is no validation set), stops training early when the validation loss stalls, and
optionally writes a checkpoint from which an interrupted fit resumes exactly: weights,
optimizer state, history, random number generator state and early-stopping state.
Checkpoint files are written atomically and read with ``torch.load(weights_only=True)``,
so they never execute code.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.history import History
from torch import nn

from ._cache import content_bytes, fingerprint
from .images import ImageSource
from .io import atomic_dump

_FORMAT = 1


class EarlyStop(KeyboardInterrupt):
    """Raised inside skorch's fit loop to end training early (skorch's own convention).

    A subclass of KeyboardInterrupt, so skorch ends training the same way, but told
    apart from a user's Ctrl-C.
    """


def _plain(value: object) -> object:
    """Nested lists/dicts with numpy scalars made Python ones (``weights_only`` loadable)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


class TrainingState(Callback):
    """Best weights so far, early stopping and optional per-epoch checkpoints.

    Parameters
    ----------
    monitor : str or None
        History key to minimise (``"valid_loss"``); ``None`` makes the last completed
        epoch the best.
    patience : int or None
        Epochs without improvement of ``monitor`` before training stops; ``None`` never.
    path : path or None
        Checkpoint file, rewritten atomically after every epoch.
    meta : dict
        Stored in the checkpoint and checked when it is read (seed, fingerprint).
    """

    def __init__(self, monitor: str | None = None, patience: int | None = None,
                 path: str | os.PathLike | None = None, meta: dict | None = None):
        self.monitor = monitor
        self.patience = patience
        self.path = path
        self.meta = meta or {}

    def initialize(self) -> TrainingState:
        self.best_score_ = math.inf
        self.best_epoch_ = 0
        self.misses_ = 0
        self.best_state_ = None  # CPU copy of the best module state so far
        self.stopped_ = False  # by early stopping
        self._optimizer_state = None  # to load once the optimizer for the phase exists
        return self

    # ------------------------------------------------------------------ callbacks
    def on_train_begin(self, net, **kwargs) -> None:
        if self._optimizer_state is not None:
            net.optimizer_.load_state_dict(self._optimizer_state)
            self._optimizer_state = None

    def on_epoch_end(self, net, **kwargs) -> None:
        epoch = len(net.history)
        score = net.history[-1, self.monitor] if self.monitor else -epoch
        if score < self.best_score_:
            self.best_score_, self.best_epoch_, self.misses_ = score, epoch, 0
            self.best_state_ = _cpu_copy(net.module_.state_dict())
        else:
            self.misses_ += 1
        self.stopped_ = self.patience is not None and self.misses_ >= self.patience
        if self.path is not None:
            self.save(net)
        if self.stopped_:
            raise EarlyStop

    # ------------------------------------------------------------------ best weights
    def restore_best(self, net) -> bool:
        """Load the best weights so far into ``net``; False when no epoch completed."""
        if self.best_state_ is None:
            return False
        net.module_.load_state_dict(self.best_state_)
        return True

    # ------------------------------------------------------------------ checkpoints
    def save(self, net) -> None:
        """Write everything needed to resume after the current epoch, atomically."""
        best_is_current = self.best_epoch_ == len(net.history)
        checkpoint = {
            "format": _FORMAT,
            "meta": self.meta,
            # the best weights were just copied when this epoch is the best
            "module": self.best_state_ if best_is_current else _cpu_copy(
                net.module_.state_dict()),
            "optimizer": net.optimizer_.state_dict(),
            "history": _plain(net.history.to_list()),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "best": None if best_is_current else self.best_state_,
            "best_score": float(self.best_score_),
            "best_epoch": self.best_epoch_,
            "misses": self.misses_,
            "stopped": self.stopped_,
        }
        atomic_dump(checkpoint, self.path, dump=torch.save)

    def resume(self, net, checkpoint: dict) -> None:
        """Load ``checkpoint`` (see :func:`read_checkpoint`) into the initialised ``net``.

        The optimizer state is loaded at ``on_train_begin``, once the optimizer of the
        current phase has been built.
        """
        net.module_.load_state_dict(checkpoint["module"])
        net.history = History(checkpoint["history"])
        torch.set_rng_state(checkpoint["rng"])
        if checkpoint["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        self.best_score_ = checkpoint["best_score"]
        self.best_epoch_ = checkpoint["best_epoch"]
        self.misses_ = checkpoint["misses"]
        self.stopped_ = checkpoint["stopped"]
        best = checkpoint["best"]  # None: the last epoch was the best
        self.best_state_ = best if best is not None else checkpoint["module"]
        self._optimizer_state = checkpoint["optimizer"]


def read_checkpoint(path: str | os.PathLike, meta: dict) -> dict | None:
    """The checkpoint at ``path`` when it exists and was written for ``meta``; else None.

    Raises
    ------
    ValueError
        When the file exists but cannot be read as a checkpoint of this fit.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: say which file and why
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to start the fit over"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a sktransfer checkpoint (format {_FORMAT})")
    if checkpoint.get("meta", {}).get("fingerprint") != meta.get("fingerprint"):
        raise ValueError(f"checkpoint {path} was written by another fit; delete it")
    return checkpoint


def _stable(value: object) -> object:
    """A process-independent stand-in for a parameter value (no memory addresses)."""
    if isinstance(value, nn.Module):
        return [type(value).__qualname__, repr(value), value.state_dict()]
    if isinstance(value, Mapping):
        return {k: _stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def fit_fingerprint(params: dict, source: ImageSource, y: np.ndarray) -> str:
    """Identify a fit: its parameters, its images and its labels.

    Files count by path, size and modification time (an edited file makes a new fit);
    arrays and PIL images by their pixels.
    """
    if source.is_array:
        images = [source.read_batch(0, len(source))]
    else:
        images = []
        for i in range(len(source)):
            item = source.item(i)
            if isinstance(item, (str, os.PathLike)):
                stat = os.stat(item)
                images.append(f"{os.path.abspath(item)}|{stat.st_size}|{stat.st_mtime_ns}")
            else:
                images.append(content_bytes(item))
    return fingerprint(_stable(params), images, y if isinstance(y, list) else np.asarray(y))
