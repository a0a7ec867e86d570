"""Local weights files: loaded safely (no unpickling), matched to an architecture, and
identified without hashing them (:func:`file_id`, the one place that says what a
weights file's identity is)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._heads import HEAD_NAMES


def looks_like_path(weights: object) -> bool:
    """Whether a ``weights`` value names a file rather than a weights name."""
    if isinstance(weights, Path):
        return True
    return isinstance(weights, str) and (
        os.sep in weights or weights.endswith((".pth", ".pt", ".bin")) or os.path.exists(weights)
    )


def file_id(path: str | os.PathLike) -> str:
    """What identifies a weights file without reading it: ``file:{path}:{size}:{mtime}``.

    The resolved path, the size in bytes and the modification time in nanoseconds (both
    ``None`` for a missing file), so a file written again gets a new identity.
    """
    path = Path(path).resolve()
    stat = path.stat() if path.is_file() else None
    return f"file:{path}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}"


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weights file safely (``torch.load(..., weights_only=True)``).

    Accepts a plain state dict or a checkpoint holding one under ``"state_dict"``,
    ``"model_state_dict"`` or ``"model"``; a ``"module."`` prefix (DataParallel) is removed.

    Parameters
    ----------
    path : path
        A file written by ``torch.save``.

    Returns
    -------
    dict of str to torch.Tensor
        The state dict, ready for ``load_state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Cannot load weights file {path} with torch.load(weights_only=True): {exc}"
        ) from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"Weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(module: nn.Module, path: str | os.PathLike) -> None:
    """Load the state dict file ``path`` into ``module`` (its head's tensors may be absent)."""
    state = load_state_dict_file(path)
    result = module.load_state_dict(state, strict=False)
    # The classifier is removed anyway: a file without it (saved from a feature body) is fine.
    missing = [k for k in result.missing_keys if k.split(".")[0] not in HEAD_NAMES]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"Weights file {path} does not match the architecture: "
            f"{len(missing)} missing keys {missing[:5]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:5]}"
        )
