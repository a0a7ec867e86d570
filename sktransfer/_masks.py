"""Segmentation targets as users hold them: one integer label mask per image.

A mask is a ``(H, W)`` array of class indices (any integer or bool dtype), or the path of
a single-channel label image (PNG in mode ``L``, ``P``, ``I`` or ``I;16``: the pixel
values, or palette indices, are the labels). :func:`as_mask_source` checks what is cheap
to check (container, count, dtype, files) and :func:`scan_masks` reads every mask once to
check its labels and its size against its image; errors name ``y[i]``, its path, and the
offending label or size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .images import ImageSource

LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")


def _where(index: int, item: object) -> str:
    if isinstance(item, (str, Path)):
        return f"y[{index}] ({os.fspath(item)!r})"
    return f"y[{index}]"


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biu":
        raise ValueError(f"{where} is a {dtype} mask; masks hold integer class labels "
                         "(cast with .astype(np.int64) if the values are whole numbers)")


def read_mask_file(path: str | os.PathLike, index: int = 0) -> np.ndarray:
    """A label image's pixel values (palette indices for mode ``P``) as a 2-D array."""
    where = _where(index, path)
    try:
        with Image.open(path) as img:
            if img.mode not in LABEL_MODES:
                raise ValueError(
                    f"{where} is a {img.mode} image; a mask file holds one class label per "
                    "pixel (a single-channel PNG: mode L, P or I)")
            return np.array(img)
    except FileNotFoundError:
        raise ValueError(f"{where}: mask file not found") from None
    except UnidentifiedImageError:
        raise ValueError(f"{where} is not a readable image file") from None
    except OSError as exc:
        raise ValueError(f"{where} is corrupt or truncated: {exc}") from None


class MaskSource:
    """Validated, indexable view on the user's masks; never copies or mutates them."""

    def __init__(self, items: Sequence):
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def item(self, index: int) -> object:
        """Mask ``index`` as the user passed it."""
        return self._items[index]

    def read(self, index: int) -> np.ndarray:
        """Mask ``index`` as a 2-D integer array (a view of an array the user passed)."""
        item = self._items[index]
        if isinstance(item, (str, Path)):
            return read_mask_file(item, index)
        arr = np.asarray(item)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return arr

    def fingerprint_parts(self) -> list:
        """What identifies the masks in a checkpoint's fingerprint (files by stat)."""
        parts = []
        for item in self._items:
            if isinstance(item, (str, Path)):
                stat = os.stat(item)
                parts.append(f"{os.path.abspath(item)}|{stat.st_size}|{stat.st_mtime_ns}")
            else:
                parts.append(np.asarray(item))
        return parts

    def subset(self, indices: Sequence[int]) -> MaskSource:
        return MaskSource([self._items[i] for i in indices])


def as_mask_source(y: object, n_images: int) -> MaskSource:
    """Check the container, count, dtypes and files of ``y``; wrap it.

    Parameters
    ----------
    y : masks
        An integer array ``(n_images, H, W)``, a list of ``(H, W)`` integer arrays (sizes
        may differ), or a list / pandas Series of label-image paths.
    n_images : int
        How many images ``X`` holds.

    Returns
    -------
    MaskSource
    """
    if y is None:
        raise ValueError("FineTuneSegmenter needs masks y: one (H, W) label array or mask "
                         "file per image")
    if hasattr(y, "iloc") and hasattr(y, "columns"):
        if y.shape[1] != 1:
            raise ValueError(f"y is a DataFrame with {y.shape[1]} columns; pass the one "
                             "column of mask paths")
        y = y.iloc[:, 0]
    if hasattr(y, "iloc"):
        y = list(y.to_numpy(dtype=object))
    if isinstance(y, (str, Path)):
        raise ValueError("y must hold one mask per image, got a single path; wrap it in a "
                         "list")
    if isinstance(y, np.ndarray) and y.dtype != object:
        if y.ndim == 2 and n_images == 1:
            y = y[None]
        if y.ndim == 4 and y.shape[-1] == 1:  # (n, H, W, 1), as image libraries give
            y = y[..., 0]
        if y.ndim != 3:
            raise ValueError(f"y has shape {y.shape}; masks are (n_images, H, W) label "
                             "arrays")
        _check_dtype(y.dtype, "y")
        items: Sequence = y
    elif hasattr(y, "__array__") and not isinstance(y, (list, tuple, np.ndarray)):  # tensors
        return as_mask_source(np.asarray(y), n_images)
    elif isinstance(y, (Sequence, np.ndarray)):
        items = list(y)
    else:
        raise ValueError(f"y has unsupported type {type(y).__name__}; pass mask arrays or "
                         "mask file paths")
    if len(items) != n_images:
        raise ValueError(f"X has {n_images} images but y has {len(items)} masks")
    if not isinstance(items, np.ndarray):
        for i, item in enumerate(items):
            if isinstance(item, (str, Path)):
                if not os.path.isfile(item):
                    raise ValueError(f"{_where(i, item)}: mask file not found")
                continue
            if item is None:
                raise ValueError(f"y[{i}] is missing (None); every image needs a mask")
            arr = np.asarray(item)
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.ndim != 2:
                raise ValueError(f"y[{i}] has shape {arr.shape}; a mask is an (H, W) array "
                                 "of class labels")
            _check_dtype(arr.dtype, f"y[{i}]")
    return MaskSource(items)


def scan_masks(masks: MaskSource, images: ImageSource, *, n_classes: int | None,
               ignore_index: int) -> int:
    """Read every mask once: check its size against its image and its labels.

    Returns
    -------
    n_classes : int
        ``n_classes`` itself, or the largest label found plus one.
    """
    largest = -1
    for i in range(len(masks)):
        mask = masks.read(i)
        where = _where(i, masks.item(i))
        size = images.size(i)
        if mask.shape != size:
            raise ValueError(f"{where} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image "
                             f"X[{i}] is {size[0]}x{size[1]}; a mask labels each pixel of its "
                             "image")
        labels = np.unique(mask)
        labels = labels[labels != ignore_index]
        if len(labels) and labels[0] < 0:
            raise ValueError(f"{where} holds the label {labels[0]}; labels are 0..n_classes-1 "
                             f"(or ignore_index={ignore_index})")
        if len(labels):
            top = int(labels[-1])
            if n_classes is not None and top >= n_classes:
                row, col = np.argwhere(mask == top)[0]
                raise ValueError(
                    f"{where} holds the label {top} (at row {row}, column {col}) but "
                    f"n_classes={n_classes}: labels are 0..{n_classes - 1}, or "
                    f"ignore_index={ignore_index} for unannotated pixels")
            largest = max(largest, top)
    if largest < 0:
        raise ValueError(f"every pixel of every mask is ignore_index={ignore_index}: "
                         "nothing to learn from")
    if n_classes is None:
        if largest < 1:
            raise ValueError("the masks hold a single class (0); need at least 2, or pass "
                             "n_classes")
        return largest + 1
    return n_classes
