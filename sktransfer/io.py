"""Writing model files atomically: a reader never sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_dump(obj: object, path: str | os.PathLike, dump: Callable | None = None) -> Path:
    """Write ``obj`` to ``path`` through a temporary file in the same folder, then rename.

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        dump(obj, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
