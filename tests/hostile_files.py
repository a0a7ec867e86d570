"""Hostile image files, built from scratch, and a crash-proof runner that reads them.

Used by tests/test_hostile.py and benchmarks/bench_hostile.py.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Outcome of a file: "read" (decoded, 3 channels), "error" (ImageInputError naming the
# file), or a crash: any other exception, an error that does not name the file, a hang,
# or the interpreter dying.
READ, ERROR = "read", "error"


def _photo(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth, asymmetric RGB test picture (the top-left corner is red)."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([255 - 3 * x, 4 * y, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    arr[:8, :8] = (255, 0, 0)
    return arr


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def build_hostile_folder(root: Path) -> dict[str, str]:
    """Write the hostile set into ``root``; return each name with its expected outcome."""
    root.mkdir(parents=True, exist_ok=True)
    photo = _photo()
    expected = {}

    Image.fromarray(photo).save(root / "good.jpg", quality=95)
    data = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expected["truncated.jpg"] = ERROR
    (root / "zero_bytes.jpg").write_bytes(b"")
    expected["zero_bytes.jpg"] = ERROR

    sixteen = (photo[..., 0].astype(np.uint16) * 257)  # full 16-bit range
    Image.fromarray(sixteen).save(root / "sixteen_bit.png")
    expected["sixteen_bit.png"] = READ

    palette = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(root / "palette_transparent.png", transparency=0)
    expected["palette_transparent.png"] = READ

    Image.fromarray(photo).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = READ

    rotated = Image.fromarray(photo)
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated.save(root / "exif_rotated.jpg", exif=exif, quality=95)
    expected["exif_rotated.jpg"] = READ

    (root / "huge_declared.png").write_bytes(_png_with_declared_size(200_000, 200_000))
    expected["huge_declared.png"] = ERROR
    (root / "text_named.jpg").write_text("this is a text file, not a JPEG\n" * 10)
    expected["text_named.jpg"] = ERROR
    (root / "directory.jpg").mkdir()
    expected["directory.jpg"] = ERROR
    (root / "missing.jpg").write_bytes(data)
    (root / "missing.jpg").unlink()  # a path that vanished between listing and reading
    expected["missing.jpg"] = ERROR
    (root / "good.jpg").unlink()
    return expected


def mutants(seed: int, count: int, folder: Path) -> list[Path]:
    """``count`` damaged copies of valid JPEG, PNG, GIF, BMP, TIFF and WebP files.

    Damage: truncation at a random offset, random byte overwrites, zeroed or duplicated
    spans and header corruption, which is what broken downloads and disks produce.
    """
    import io

    rng = np.random.default_rng(seed)
    photo = Image.fromarray(_photo(40, 52))
    sources = []
    for fmt, suffix, kwargs in (("JPEG", ".jpg", {"quality": 90}), ("PNG", ".png", {}),
                                ("GIF", ".gif", {}), ("BMP", ".bmp", {}),
                                ("TIFF", ".tif", {}), ("WEBP", ".webp", {"quality": 80}),
                                ("JPEG", ".jpeg", {"progressive": True})):
        buf = io.BytesIO()
        photo.save(buf, format=fmt, **kwargs)
        sources.append((suffix, buf.getvalue()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        suffix, data = sources[i % len(sources)]
        b = bytearray(data)
        kind = rng.integers(4)
        if kind == 0:
            b = b[: rng.integers(1, len(b))]
        elif kind == 1:
            for _ in range(rng.integers(1, 20)):
                b[rng.integers(len(b))] = rng.integers(256)
        elif kind == 2:
            start = rng.integers(len(b))
            stop = min(len(b), start + rng.integers(1, 512))
            b[start:stop] = bytes(stop - start) if rng.random() < 0.5 else b[start:stop] * 2
        else:
            for _ in range(rng.integers(1, 6)):
                b[rng.integers(min(len(b), 64))] = rng.integers(256)
        path = folder / f"mutant{i:05d}{suffix}"
        path.write_bytes(bytes(b))
        paths.append(path)
    return paths


RUNNER = r"""
import json, sys
from PIL import Image
from sktransfer.errors import ImageInputError
from sktransfer.images import Preprocessing, as_image_source

prep = Preprocessing(32, 32)
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        img = as_image_source([path]).read(0)
        out = prep.resize_crop(img)
        shape = tuple(out.shape) if hasattr(out, "shape") else (3, *out.size[::-1])
        assert shape == (3, 32, 32), shape
        result = "read"
    except ImageInputError as exc:
        result = "error" if path in str(exc) else f"crash: error without the path: {exc}"
    except BaseException as exc:
        result = f"crash: {type(exc).__name__}: {exc}"
    print(json.dumps([path, result]), flush=True)
"""


def read_in_subprocess(paths: list[Path], timeout: float = 600) -> dict[str, str]:
    """Read every file in a child interpreter; an interpreter death counts as a crash.

    After a death the remaining files are read by a new child, so one bad file cannot
    hide others.
    """
    results: dict[str, str] = {}
    pending = [str(p) for p in paths]
    while pending:
        proc = subprocess.run([sys.executable, "-c", RUNNER], input="\n".join(pending) + "\n",
                              capture_output=True, text=True, timeout=timeout)
        for line in proc.stdout.splitlines():
            path, result = json.loads(line)
            results[path] = result
        done = [p for p in pending if p in results]
        pending = pending[len(done):]
        if pending:  # the child died on pending[0]
            results[pending[0]] = f"crash: interpreter died (exit {proc.returncode}): " \
                                  f"{proc.stderr[-300:]}"
            pending = pending[1:]
    return results
