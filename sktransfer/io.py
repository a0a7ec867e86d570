"""Writing model files atomically: a reader never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *,
                 fsync: bool = True) -> Path:
    """Create ``path`` through a temporary file in the same folder, then rename it.

    Readers see the old file or the complete new one, never a partial one; a failed
    ``write`` leaves no temporary file behind.

    Parameters
    ----------
    path : path
        Destination; its folder is created if needed.
    write : callable
        ``write(temporary_path)`` writes the content.
    fsync : bool, default=True
        Flush the file to disk before the rename (so that it survives a power cut; the
        embedding cache skips it: a lost entry is recomputed).

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_dump(obj: object, path: str | os.PathLike, dump: Callable | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically (see :func:`atomic_write`), flushed to disk.

    Parameters
    ----------
    obj : object
        What to save.
    path : path
        Destination; replaced only once the new file is complete and flushed to disk.
    dump : callable, default=None
        ``dump(obj, file_path)``; :func:`joblib.dump` by default.

    Returns
    -------
    Path
        The written path.
    """
    if dump is None:
        import joblib

        dump = joblib.dump
    return atomic_write(path, lambda tmp: dump(obj, tmp))


__all__ = ["atomic_dump"]
