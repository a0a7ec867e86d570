"""Turn images as users hold them into normalised batches of tensors.

Accepted inputs (``X``):

* a sequence (list, tuple, object array, :class:`pandas.Series` or one-column
  :class:`pandas.DataFrame`) of file paths (``str`` or :class:`pathlib.Path`),
  :class:`PIL.Image.Image` objects, or single-image arrays (``HW``/``HWC`` uint8,
  ``CHW`` float); images may have different sizes;
* a uint8 array ``NHWC`` or ``NHW`` (grayscale) with values in ``[0, 255]``;
* a float array or tensor ``NCHW`` with values in ``[0, 1]``; a uint8 tensor
  ``NCHW`` (torchvision's own convention).

Every image becomes 3-channel RGB: grayscale is repeated, alpha is dropped (after
compositing transparent pixels on white for files and PIL images), palette,
16-bit and CMYK images are converted. Errors caused by the input name the
offending item by index (and path).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .errors import ImageInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
_EXIF_ORIENTATION = 0x0112
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize, centre crop and normalisation applied to every image.

    Parameters
    ----------
    resize_size : int
        The shorter side is resized to this many pixels (aspect ratio kept).
    crop_size : int
        Side of the square centre crop taken after resizing.
    mean, std : tuple of float
        Per-channel normalisation applied to RGB values scaled to ``[0, 1]``.
    interpolation : InterpolationMode, default=BILINEAR
        Interpolation used for resizing.
    """

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: InterpolationMode = field(default=InterpolationMode.BILINEAR)

    def prepare(self, img: Image.Image | torch.Tensor) -> torch.Tensor:
        """Resize, crop and convert one image: the per-image step of every estimator.

        Extraction, training and prediction all prepare images here; normalisation
        follows on whole batches (:meth:`normalize`), on the compute device.

        Parameters
        ----------
        img : PIL.Image.Image or torch.Tensor
            An RGB image, or a ``(3, H, W)`` tensor (uint8, or float in ``[0, 1]``).

        Returns
        -------
        torch.Tensor
            Shape ``(3, crop_size, crop_size)``: uint8, or float32 for float inputs.
        """
        return image_tensor(self.resize_crop(img))

    def resize_crop(self, img: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """Resize the shorter side and centre crop.

        Parameters
        ----------
        img : PIL.Image.Image or torch.Tensor
            An image, or a tensor of shape ``(..., C, H, W)``.

        Returns
        -------
        PIL.Image.Image or torch.Tensor
            The ``crop_size`` x ``crop_size`` crop, of the input's type.
        """
        if isinstance(img, torch.Tensor) and img.shape[-2:] == (self.crop_size,) * 2 and (
                self.resize_size == self.crop_size):
            return img  # already at size: nothing to resample
        if isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and 1 in img.shape[-2:]:
            # torch's uint8 antialiased resize misreads the strides of size-1 dimensions
            # (wrong pixels, no error; found by the property tests): give it fresh ones
            img = img.clone(memory_format=torch.contiguous_format)
        img = TF.resize(img, [self.resize_size], interpolation=self.interpolation, antialias=True)
        return TF.center_crop(img, [self.crop_size, self.crop_size])

    def crop_at(self, img: Image.Image | torch.Tensor, row: float,
                col: float) -> Image.Image | torch.Tensor:
        """Resize the shorter side, then crop at a position other than the centre.

        Parameters
        ----------
        img : PIL.Image.Image or torch.Tensor
            An image, or a tensor of shape ``(..., C, H, W)``.
        row, col : float
            Fractions of the free space above and left of the crop: ``(0, 0)`` is the
            top-left corner, ``(1, 1)`` the bottom-right one.

        Returns
        -------
        PIL.Image.Image or torch.Tensor
            The ``crop_size`` x ``crop_size`` crop, of the input's type.
        """
        if isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and 1 in img.shape[-2:]:
            img = img.clone(memory_format=torch.contiguous_format)  # see resize_crop
        img = TF.resize(img, [self.resize_size], interpolation=self.interpolation, antialias=True)
        height, width = (img.shape[-2:] if isinstance(img, torch.Tensor)
                         else (img.height, img.width))
        size = self.crop_size
        top = round(row * max(height - size, 0))
        left = round(col * max(width - size, 0))
        if height < size or width < size:  # smaller than the crop: pad as centre_crop does
            return TF.center_crop(img, [size, size])
        return TF.crop(img, top, left, size, size)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Scale a uint8 or ``[0, 1]`` float batch and normalise it.

        Parameters
        ----------
        batch : torch.Tensor
            Shape ``(N, 3, H, W)``, uint8 or float in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            Float, minus ``mean`` and divided by ``std`` per channel.
        """
        scale = 255.0 if batch.dtype == torch.uint8 else 1.0
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1) * scale
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1) * scale
        # Out of place: the batch may be a view of the caller's array.
        return (batch.float() - mean) / std


def _describe(index: int, item: object) -> str:
    if isinstance(item, (str, Path)):
        return f"X[{index}] ({os.fspath(item)!r})"
    return f"X[{index}]"


# --------------------------------------------------------------------------- decoding
def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(path: str | os.PathLike, index: int = 0) -> Image.Image:
    """Read an image file as RGB, honouring EXIF orientation.

    Raises
    ------
    ImageInputError
        If the file is missing, empty, not an image, truncated, or too large.
    """
    where = _describe(index, path)
    try:
        if os.path.isdir(path):
            raise ImageInputError(f"{where} is a directory, not an image file")
        size = os.path.getsize(path)
        if size == 0:
            raise ImageInputError(f"{where} is an empty (zero-byte) file")
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return pil_to_rgb(img)
    except ImageInputError:
        raise
    except FileNotFoundError:
        raise ImageInputError(f"{where}: file not found") from None
    except PermissionError as exc:
        raise ImageInputError(f"{where}: permission denied ({exc.strerror})") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{where} is not a readable image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(
            f"{where} declares too many pixels (decompression-bomb guard): {exc}"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{where} is corrupt or truncated: {exc}") from None


_FAST_SUFFIXES = (".jpg", ".jpeg")
try:  # deprecated in torchvision 0.29 in favour of torchcodec; PIL takes over once removed
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - depends on the torchvision version
    decode_image = None


def decode_file(path: str | os.PathLike, index: int = 0) -> Image.Image | torch.Tensor:
    """Read an image file as RGB: JPEGs with torchvision's decoder, else PIL.

    torchvision's libjpeg-turbo decoder is about 1.6x faster than PIL for JPEGs (measured
    on 640x480 files, one thread) and gives the same pixels, EXIF orientation and CMYK
    conversion included. The header is read with PIL first so the decompression-bomb
    guard applies; anything the fast path cannot decode (truncated, corrupt, another
    format behind a .jpg name) goes through :func:`open_image`, which names the problem.
    Returns a ``(3, H, W)`` uint8 tensor for JPEGs, a PIL image otherwise.
    """
    if decode_image is not None and os.fspath(path).lower().endswith(_FAST_SUFFIXES):
        try:
            with Image.open(path) as img:
                if img.format == "JPEG" and img.width * img.height <= (
                        Image.MAX_IMAGE_PIXELS or float("inf")):
                    data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
                    return decode_image(data, mode=ImageReadMode.RGB,
                                        apply_exif_orientation=True)
        except Exception:  # fall back to PIL, which reports the cause
            pass
    return open_image(path, index)


# --------------------------------------------------------------------------- sources
class ImageSource:
    """Validated, indexable view on the user's images; never copies or mutates them.

    Use :func:`as_image_source` to build one. ``read(i)`` returns a PIL image (RGB) or a
    ``(3, H, W)`` tensor (uint8, or float in ``[0, 1]``) at the image's own size.
    """

    def __init__(self, items: Sequence | None = None, array: torch.Tensor | None = None,
                 positions: Sequence[int] | None = None):
        self._items = items
        self._array = array
        self._positions = positions  # original index of each item, for error messages

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else len(self._items)

    @property
    def is_array(self) -> bool:
        """Whether all images come from one array of equal-size images."""
        return self._array is not None

    def read(self, index: int) -> Image.Image | torch.Tensor:
        """Return image ``index`` as RGB PIL image or ``(3, H, W)`` tensor."""
        if self._array is not None:
            return self._array[index]
        position = index if self._positions is None else self._positions[index]
        return _read_item(self._items[index], position)

    def item(self, index: int) -> object:
        """Image ``index`` as the user passed it (array sources: a ``(3, H, W)`` view)."""
        return self._array[index] if self._array is not None else self._items[index]

    def size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index`` as :meth:`read` gives it; files are
        sized from their header (EXIF orientation included), not decoded."""
        if self._array is not None:
            return tuple(self._array.shape[-2:])
        item = self._items[index]
        if isinstance(item, (str, Path)):
            try:
                with Image.open(item) as img:
                    width, height = img.size
                    if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                        width, height = height, width  # exif_transpose turns it
                    return height, width
            except Exception:  # unreadable: decoding names the problem
                pass
        img = self.read(index)
        return tuple(img.shape[-2:]) if isinstance(img, torch.Tensor) else (img.height,
                                                                          img.width)

    def subset(self, indices: Sequence[int]) -> ImageSource:
        """The images at ``indices``; errors still name their positions in the full input."""
        indices = list(indices)
        if self._array is not None:
            return ImageSource(array=self._array[torch.as_tensor(indices, dtype=torch.long)])
        positions = indices if self._positions is None else [self._positions[i]
                                                            for i in indices]
        return ImageSource(items=[self._items[i] for i in indices], positions=positions)

    def read_batch(self, start: int, stop: int) -> torch.Tensor:
        """Return images ``start:stop`` of an array source as a ``(N, 3, H, W)`` tensor."""
        return self._array[start:stop]


def renamed(error: ImageInputError, name: str) -> ImageInputError:
    """``error`` with its leading ``X`` (``X[i]``, ``X has``...) renamed ``name``."""
    message = str(error)
    return ImageInputError(name + message[1:] if message.startswith("X") else message)


class ConcatSource(ImageSource):
    """Two sources one after the other; errors name an item of the second as
    ``{second_name}[j]`` (its own index), not by its position in the whole."""

    def __init__(self, first: ImageSource, second: ImageSource, second_name: str):
        super().__init__(items=None)
        self.first, self.second, self.second_name = first, second, second_name

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    @property
    def is_array(self) -> bool:
        return False

    def _where(self, index: int) -> tuple[ImageSource, int]:
        n = len(self.first)
        return (self.first, index) if index < n else (self.second, index - n)

    def read(self, index: int) -> Image.Image | torch.Tensor:
        source, j = self._where(index)
        if source is self.first:
            return source.read(j)
        try:
            return source.read(j)
        except ImageInputError as exc:
            raise renamed(exc, self.second_name) from None

    def item(self, index: int) -> object:
        source, j = self._where(index)
        return source.item(j)

    def size(self, index: int) -> tuple[int, int]:
        source, j = self._where(index)
        return source.size(j)

    def subset(self, indices: Sequence[int]) -> ImageSource:
        return ImageSource(items=[self.item(i) for i in indices])


def _read_item(item: object, index: int) -> Image.Image | torch.Tensor:
    if isinstance(item, (str, Path)):
        return decode_file(item, index)
    if isinstance(item, Image.Image):
        try:
            return pil_to_rgb(item)
        except (OSError, ValueError) as exc:
            raise ImageInputError(f"X[{index}]: cannot convert PIL image: {exc}") from None
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return _single_array(item, index)
    raise ImageInputError(
        f"X[{index}] has unsupported type {type(item).__name__}; expected a file path, "
        "a PIL image or an image array"
    )


# Float images are read as [0, 1]. Interpolation can overshoot a little; values beyond
# these bounds mean 0-255 data or data already normalised with a mean and std, which
# would give wrong embeddings without any error.
FLOAT_RANGE = (-0.25, 1.25)


def _check_values(batch: torch.Tensor, offset: int = 0) -> None:
    """Reject NaN/inf and values far outside [0, 1] in a float ``(N, ...)`` tensor.

    Names the first bad image.
    """
    if not batch.is_floating_point():
        return
    lo, hi = FLOAT_RANGE
    for start in range(0, len(batch), 256):  # chunked: bounded temporary memory
        chunk = batch[start : start + 256].reshape(min(256, len(batch) - start), -1)
        bad = ~torch.isfinite(chunk).all(dim=1)
        if bad.any():
            first = int(bad.nonzero()[0]) + start + offset
            raise ImageInputError(f"X[{first}] contains NaN or infinite values")
        if not chunk.numel():
            continue
        low, high = chunk.amin(dim=1), chunk.amax(dim=1)
        out = (low < lo) | (high > hi)
        if out.any():
            i = int(out.nonzero()[0])
            raise ImageInputError(
                f"X[{i + start + offset}] has float values in [{float(low[i]):.3g}, "
                f"{float(high[i]):.3g}]; float images must be in [0, 1]. Divide 0-255 data "
                "by 255; pass images before normalisation (sktransfer normalises them)"
            )


def _single_array(item: np.ndarray | torch.Tensor, index: int) -> torch.Tensor:
    """One image array: ``HW``/``HWC`` uint8 or ``CHW`` float/uint8 tensor -> ``(3,H,W)``."""
    arr = item
    if isinstance(arr, np.ndarray):
        _check_dtype(arr.dtype, f"X[{index}]")
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[-1] in (1, 3, 4):
            arr = np.moveaxis(arr, -1, 0)
        elif arr.ndim != 3:
            raise ImageInputError(
                f"X[{index}] has shape {arr.shape}; an image array must be HW, HWC or CHW"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        tensor = item.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim != 3:
            raise ImageInputError(
                f"X[{index}] has shape {tuple(tensor.shape)}; an image tensor must be CHW"
            )
    if 0 in tensor.shape:
        raise ImageInputError(f"X[{index}] has shape {tuple(item.shape)}: the image has no "
                              "pixels")
    _check_values(tensor[None], offset=index)
    return _to_rgb_channels(tensor[None], f"X[{index}]")[0]


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype != np.uint8 and dtype.kind != "f":
        raise ImageInputError(
            f"{what} has dtype {dtype}; image arrays must be uint8 (0-255) or float (0-1). "
            "Convert with arr.astype(np.uint8) or arr / 255.0"
        )


def _to_rgb_channels(batch: torch.Tensor, what: str) -> torch.Tensor:
    """``(N, C, H, W)`` with C in 1/3/4 -> ``(N, 3, H, W)``."""
    channels = batch.shape[1]
    if channels == 3:
        return batch
    if channels == 1:
        return batch.expand(-1, 3, -1, -1)
    if channels == 4:
        return batch[:, :3]
    raise ImageInputError(
        f"{what} has {channels} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA)"
    )


def _batched_array(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A whole-batch array -> ``(N, 3, H, W)`` tensor view (no copy where possible)."""
    if isinstance(arr, np.ndarray):
        _check_dtype(arr.dtype, "X")
        if arr.ndim == 3:
            if arr.dtype != np.uint8:
                raise ImageInputError(
                    f"X has shape {arr.shape} and dtype {arr.dtype}; a 3-D array is read as "
                    "NHW grayscale and must be uint8. Pass float images as NCHW"
                )
            arr = arr[:, None]
        elif arr.ndim == 4:
            if arr.dtype == np.uint8 and arr.shape[-1] in (1, 3, 4):
                arr = np.moveaxis(arr, -1, 1)
            elif arr.shape[1] not in (1, 3, 4):
                layout = "NHWC" if arr.dtype == np.uint8 else "NCHW"
                raise ImageInputError(
                    f"X has shape {arr.shape}; {arr.dtype} arrays must be {layout} with "
                    "1, 3 or 4 channels"
                )
        else:
            raise ImageInputError(
                f"X has shape {arr.shape}; expected NHWC or NHW uint8, NCHW float, or a list "
                "of images"
            )
        if any(stride < 0 for stride in arr.strides):  # a flipped view, e.g. X[:, :, ::-1]
            arr = arr.copy()  # torch cannot view it; a copy, the user's array stays as is
        tensor = torch.from_numpy(arr)
    else:
        tensor = arr.detach()
        if tensor.ndim == 3:
            tensor = tensor[:, None]
        if tensor.ndim != 4 or tensor.shape[1] not in (1, 3, 4):
            raise ImageInputError(
                f"X has shape {tuple(arr.shape)}; image tensors must be NCHW with 1, 3 or 4 "
                "channels"
            )
        if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
            raise ImageInputError(f"X has dtype {tensor.dtype}; expected uint8 or float")
        tensor = tensor.cpu()
    if tensor.shape[0] == 0:
        raise ImageInputError("X is empty: it contains no images")
    if 0 in tensor.shape[2:]:
        raise ImageInputError(f"X has shape {tuple(arr.shape)}: images have no pixels")
    _check_values(tensor)
    return _to_rgb_channels(tensor, "X")


def as_image_source(X: object) -> ImageSource:
    """Validate ``X`` and wrap it as an :class:`ImageSource`.

    Cheap checks (container type, array rank, dtype, NaN, empty input, missing files)
    run here, before any model work; decoding errors surface when an item is read.

    Parameters
    ----------
    X : images
        Paths (a list, a pandas Series or a one-column DataFrame), PIL images, uint8
        arrays ``NHWC``/``NHW``, float arrays or tensors ``NCHW`` in ``[0, 1]``, or a list
        of single images of different sizes.

    Returns
    -------
    ImageSource
        Indexable: item ``i`` is the ``i``-th image, read when asked for.

    Raises
    ------
    ImageInputError
        With a message naming the offending item.
    """
    if isinstance(X, ImageSource):
        return X
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # pandas DataFrame
        if X.shape[1] != 1:
            raise ImageInputError(
                f"X is a DataFrame with {X.shape[1]} columns; pass the one column that holds "
                "the images (e.g. df['path'])"
            )
        X = X.iloc[:, 0]
    if hasattr(X, "iloc"):  # pandas Series: positional values
        X = list(X.to_numpy(dtype=object))
    if isinstance(X, (str, bytes, Path, Image.Image)):
        raise ImageInputError(
            f"X must be a collection of images, got a single {type(X).__name__}; wrap it in a "
            "list"
        )
    if isinstance(X, (np.ndarray, torch.Tensor)) and not (
        isinstance(X, np.ndarray) and X.dtype == object
    ):
        return ImageSource(array=_batched_array(X))
    if not isinstance(X, Sequence) and not isinstance(X, np.ndarray):
        raise ImageInputError(
            f"X has unsupported type {type(X).__name__}; expected a list of paths or images, "
            "an image array, a tensor or a pandas Series"
        )
    items = list(X)
    if not items:
        raise ImageInputError("X is empty: it contains no images")
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            if isinstance(item, str) and not item.strip():
                raise ImageInputError(f"X[{i}] is an empty string, not a path")
            if not os.path.exists(item):
                raise ImageInputError(f"{_describe(i, item)}: file not found")
        elif item is None or (isinstance(item, float) and np.isnan(item)):
            raise ImageInputError(f"X[{i}] is missing (None/NaN)")
        elif isinstance(item, np.ndarray) and item.dtype != object:
            _check_dtype(item.dtype, f"X[{i}]")
            if item.size == 0:
                raise ImageInputError(f"X[{i}] has shape {item.shape}: the image has no "
                                      "pixels")
            if item.dtype.kind == "f":
                _check_values(torch.from_numpy(np.ascontiguousarray(item))[None], offset=i)
        elif not isinstance(item, (Image.Image, torch.Tensor)):
            raise ImageInputError(
                f"X[{i}] has unsupported type {type(item).__name__}; expected a file path, a "
                "PIL image or an image array"
            )
    return ImageSource(items=items)


# --------------------------------------------------------------------------- batching
def image_tensor(img: Image.Image | torch.Tensor) -> torch.Tensor:
    """A PIL image as a uint8 ``(C, H, W)`` tensor; a float tensor as float32."""
    if not isinstance(img, torch.Tensor):
        img = TF.pil_to_tensor(img)
    if img.dtype != torch.uint8:
        img = img.float()  # float images in [0, 1]
    return img


def _prepare_one(source: ImageSource, prep: Preprocessing, index: int) -> torch.Tensor:
    return prep.prepare(source.read(index))


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    if any(t.dtype != torch.uint8 for t in tensors):
        tensors = [t.float().div(255.0) if t.dtype == torch.uint8 else t.float() for t in tensors]
    return torch.stack(tensors)


def iter_batches(
    source: ImageSource,
    prep: Preprocessing,
    batch_size: int,
    *,
    n_workers: int = 4,
    prefetch: int = 2,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, batch)`` with ``batch`` a resized, cropped ``(B, 3, S, S)`` CPU tensor.

    The batch is uint8 or float in ``[0, 1]``; :meth:`Preprocessing.normalize` finishes it
    on the compute device. Items from paths and PIL images are decoded by ``n_workers``
    threads, ``prefetch`` batches ahead of the consumer, so decoding overlaps with model
    compute while memory stays bounded by ``(prefetch + 1) * batch_size`` images.
    """
    n = len(source)
    starts = range(0, n, batch_size)
    if source.is_array:
        for start in starts:  # resized as a whole batch; converted as prepare() does
            yield start, image_tensor(prep.resize_crop(source.read_batch(start,
                                                                         start + batch_size)))
        return
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        pending: deque = deque()

        def submit(start: int) -> None:
            stop = min(start + batch_size, n)
            pending.append(
                (start, [pool.submit(_prepare_one, source, prep, i) for i in range(start, stop)])
            )

        todo = iter(starts)
        for start in todo:
            submit(start)
            if len(pending) > prefetch:
                break
        while pending:
            start, futures = pending.popleft()
            try:
                batch = _stack([f.result() for f in futures])
            except BaseException:
                for _, later in pending:
                    for f in later:
                        f.cancel()
                raise
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            yield start, batch


__all__ = ["Preprocessing", "as_image_source"]
