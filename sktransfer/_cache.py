"""A content-keyed, on-disk cache of embeddings.

An entry's key is a hash of the image's content (file bytes, or array/pixel bytes) and
of everything that changes its embedding: the network's architecture and weights, the
layers read, the preprocessing and the compute dtype. Paths, object identities and
timestamps are never part of a key, so renamed or copied files hit the cache and an
edited file misses it. Entries are written atomically (temporary file, then rename);
an unreadable, truncated or malformed entry is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io import atomic_write

_MAGIC = b"SKTE1"  # format tag of an entry file: magic, uint32 length, float32 data


def fingerprint(*parts: object) -> str:
    """A stable hex digest of strings, bytes, arrays, tensors and state dicts."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        _update(h, part)
    return h.hexdigest()


def _update(h, part: object) -> None:
    if isinstance(part, bytes):
        h.update(b"b%d:" % len(part))
        h.update(part)
    elif isinstance(part, torch.Tensor):
        t = part.detach().cpu().contiguous()
        _update(h, f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # no copy
    elif isinstance(part, np.ndarray):
        a = np.ascontiguousarray(part)
        _update(h, f"array{a.shape}{a.dtype}".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")  # the bytes, not a copy
    elif isinstance(part, dict):
        for key in sorted(part):
            _update(h, str(key).encode())
            _update(h, part[key])
    elif isinstance(part, (list, tuple)):
        _update(h, f"seq{len(part)}".encode())
        for item in part:
            _update(h, item)
    else:
        _update(h, repr(part).encode())


def content_bytes(item: object) -> bytes | np.ndarray | torch.Tensor:
    """What identifies one image: file bytes, PIL pixels, or the array/tensor itself."""
    if isinstance(item, (str, Path)):
        return Path(item).read_bytes()
    if isinstance(item, Image.Image):
        return f"{item.mode}{item.size}".encode() + item.tobytes()
    return item


class EmbeddingCache:
    """Embeddings stored one file per image under ``directory/<model key>/``.

    Parameters
    ----------
    directory : path
        Root folder; created when missing. Safe to share between processes.
    model_key : str
        Fingerprint of everything besides the image that changes the embedding.
    n_features : int
        Length of each embedding; entries of another length are misses.
    """

    def __init__(self, directory: str | os.PathLike, model_key: str, n_features: int):
        self.root = Path(directory) / model_key
        self.n_features = n_features

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.emb"

    def get(self, key: str) -> np.ndarray | None:
        """The stored embedding, or None when missing or unreadable."""
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        header = len(_MAGIC) + 4
        if len(data) != header + 4 * self.n_features or not data.startswith(_MAGIC):
            return None
        if int.from_bytes(data[len(_MAGIC):header], "little") != self.n_features:
            return None
        vector = np.frombuffer(data, dtype="<f4", offset=header)
        return vector if np.isfinite(vector).all() else None

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store atomically: readers see the old entry or the complete new one."""
        payload = (_MAGIC + self.n_features.to_bytes(4, "little")
                   + np.asarray(vector, dtype="<f4").tobytes())
        atomic_write(self._path(key), lambda tmp: tmp.write_bytes(payload), fsync=False)


def cache_directory(cache: object) -> Path | None:
    """``cache`` as a folder: a path, or a :class:`joblib.Memory` (its location)."""
    if cache is None:
        return None
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache)
    location = getattr(cache, "location", None)
    if hasattr(cache, "cache") and location is None:
        return None  # joblib.Memory(None): caching disabled
    if location is not None:
        return Path(location) / "sktransfer"
    raise ValueError(
        f"cache must be None, a directory path or a joblib.Memory, got {type(cache).__name__}"
    )
