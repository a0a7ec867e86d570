"""Small image tasks that need no download: patches and collages of the photos that ship
with scikit-learn, shifted digits, and synthetic captioned shapes for vision-language models."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_sample_images

from ._captioned_shapes import held_out_combos
from ._captioned_shapes import render as load_captioned_shapes


def load_region_patches(
    n_per_region: int = 5, *, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make patches of scikit-learn's two sample photos, labelled by photo and grid region.

    Each photo (``china.jpg``, ``flower.jpg``) is split into a 2 x 3 grid: 12 classes.
    Patches are placed at random inside their region, randomly flipped and rotated, so
    a model must recognise textures and content rather than positions: raw pixels do
    poorly, pretrained features well.

    Parameters
    ----------
    n_per_region : int, default=5
        Patches drawn per class.
    size : int, default=64
        Side of the square patches, in pixels.
    seed : int, default=0
        Seed of the random placement; use different seeds for train and test sets.

    Returns
    -------
    X : ndarray of shape (12 * n_per_region, size, size, 3), dtype uint8
        The patches, RGB.
    y : ndarray of shape (12 * n_per_region,), dtype int
        Class ``6 * photo + 3 * row + column``.
    """
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, img in enumerate(load_sample_images().images):
        h, w = img.shape[0] // 2, img.shape[1] // 3
        for gi in range(2):
            for gj in range(3):
                for _ in range(n_per_region):
                    r = rng.integers(gi * h, (gi + 1) * h - size)
                    c = rng.integers(gj * w, (gj + 1) * w - size)
                    patch = img[r : r + size, c : c + size]
                    if rng.random() < 0.5:
                        patch = patch[:, ::-1]
                    X.append(np.ascontiguousarray(np.rot90(patch, rng.integers(4))))
                    y.append(k * 6 + gi * 3 + gj)
    return np.stack(X), np.asarray(y)


def load_digits_shift(
    *, size: int = 32, n_target: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A domain-shift task in the manner of MNIST -> MNIST-M, from scikit-learn's data.

    Source: scikit-learn's 1,797 handwritten digits (8 x 8, 17 grey levels), upscaled
    bilinearly to ``size`` and shown white on black, in RGB. Target: the same kind of
    digits blended into random colour crops of scikit-learn's two sample photos as
    MNIST-M does (Ganin & Lempitsky, 2015): each pixel is ``|photo - digit|`` per
    channel, so strokes invert the photo's colours. A classifier trained on the source
    alone loses much of its accuracy on the target.

    The digits are split in two halves at random: the first half gives the source, the
    second the target, so no digit image appears in both domains.

    Parameters
    ----------
    size : int, default=32
        Side of the square images, in pixels (at least 8).
    n_target : int, default=None
        Target images to make (at most 898); all of the second half when None.
    seed : int, default=0
        Seed of the split, the photo crops and their placement.

    Returns
    -------
    X_source : ndarray of shape (899, size, size, 3), dtype uint8
        The labelled source images: grey digits on black, RGB.
    y_source : ndarray of shape (899,), dtype int
        Digits 0-9.
    X_target : ndarray of shape (n_target, size, size, 3), dtype uint8
        The target images: digits blended into colour photo crops.
    y_target : ndarray of shape (n_target,), dtype int
        The target's digits: for scoring only (hide them from ``fit``).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    half = (len(order) + 1) // 2
    src, tgt = order[:half], order[half:]
    if n_target is not None:
        if not 1 <= n_target <= len(tgt):
            raise ValueError(f"n_target must be in [1, {len(tgt)}], got {n_target}")
        tgt = tgt[:n_target]

    def upscale(index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), size, size), dtype=np.float32)
        for k, i in enumerate(index):
            grey = Image.fromarray((digits.images[i] * (255 / 16)).astype(np.float32), "F")
            out[k] = np.asarray(grey.resize((size, size), Image.BILINEAR))
        return np.clip(out, 0, 255)

    source = upscale(src)
    X_source = np.repeat(source[..., None], 3, axis=3).round().astype(np.uint8)
    photos = load_sample_images().images
    target = upscale(tgt)
    X_target = np.empty((len(tgt), size, size, 3), dtype=np.uint8)
    for k in range(len(tgt)):
        photo = photos[rng.integers(len(photos))]
        r = rng.integers(0, photo.shape[0] - size)
        c = rng.integers(0, photo.shape[1] - size)
        crop = photo[r:r + size, c:c + size].astype(np.float32)
        X_target[k] = np.abs(crop - target[k][..., None]).round().astype(np.uint8)
    return X_source, digits.target[src], X_target, digits.target[tgt]


def load_photo_collage(
    n_images: int = 40, *, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make collages of scikit-learn's two sample photos, masked by the photo of each pixel.

    Each image is a random crop of one photo (at a random zoom, maybe mirrored) with one
    to three random shapes (ellipses and polygons) cut from a random crop of the other
    photo pasted on it. The mask labels every pixel by its photo: 0 for ``china.jpg``, 1
    for ``flower.jpg``. Which photo is the background is drawn per image, so position
    tells nothing; colour alone tells little (both photos have green, grey and dark
    areas); texture and content do.

    Parameters
    ----------
    n_images : int, default=40
        Images to make.
    size : int, default=64
        Side of the square images, in pixels (at least 16).
    seed : int, default=0
        Seed of crops, zooms, shapes and placements; use different seeds for training
        and test sets.

    Returns
    -------
    X : ndarray of shape (n_images, size, size, 3), dtype uint8
        The collages, RGB.
    masks : ndarray of shape (n_images, size, size), dtype int64
        0 where the pixel came from ``china.jpg``, 1 where from ``flower.jpg``.
    """
    from PIL import Image, ImageDraw

    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(p) for p in load_sample_images().images]

    def crop(photo: Image.Image) -> np.ndarray:
        side = int(rng.integers(size, min(photo.size) // 2))  # zoom: 1 to ~3.3x smaller
        left = int(rng.integers(0, photo.width - side))
        top = int(rng.integers(0, photo.height - side))
        out = photo.crop((left, top, left + side, top + side)).resize((size, size),
                                                                       Image.BILINEAR)
        arr = np.asarray(out)
        return arr[:, ::-1] if rng.random() < 0.5 else arr

    X = np.empty((n_images, size, size, 3), dtype=np.uint8)
    masks = np.empty((n_images, size, size), dtype=np.int64)
    for k in range(n_images):
        back = int(rng.integers(2))
        shapes = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(shapes)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0.1, 0.9, size=2) * size
            rx, ry = rng.uniform(0.12, 0.35, size=2) * size
            if rng.random() < 0.5:
                draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=1)
            else:
                angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 7))))
                points = [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]
                draw.polygon(points, fill=1)
        pasted = np.asarray(shapes, dtype=bool)
        X[k] = np.where(pasted[..., None], crop(photos[1 - back]), crop(photos[back]))
        masks[k] = np.where(pasted, 1 - back, back)
    return X, masks


#: The shift families of :func:`load_photo_shift`.
SHIFT_FAMILIES = ("greyscale", "blur", "noise", "jpeg", "contrast", "sketch", "illumination")


def load_photo_shift(
    family: str, *, severity: int = 3, n_per_region: int = 10, n_target_per_region: int = 20,
    size: int = 64, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A domain-shift task: clean photo patches as the source, altered ones as the target.

    Both domains hold patches of :func:`load_region_patches`' 12 classes (which of
    scikit-learn's two sample photos, which region of a 2 x 3 grid), drawn independently;
    the target's are altered by one ``family`` of shift, so only the look of the images
    changes, not what they show:

    - ``"greyscale"``: colour removed (a fifth of the saturation per severity level);
    - ``"blur"``, ``"noise"``, ``"jpeg"``, ``"contrast"``: ImageNet-C's corruptions
      (Hendrycks & Dietterich, 2019) at its five severities (Gaussian blur, Gaussian
      noise, JPEG compression, contrast reduction), the blur radius scaled to ``size``;
    - ``"sketch"``: an edge rendering, dark lines on white (blended with the photo at
      low severities);
    - ``"illumination"``: darker (gamma 1.4-3.0) under a warm light.

    Parameters
    ----------
    family : str
        One of :data:`SHIFT_FAMILIES`.
    severity : int, default=3
        1 (mild) to 5 (strong).
    n_per_region : int, default=10
        Source patches per class.
    n_target_per_region : int, default=20
        Target patches per class.
    size : int, default=64
        Side of the square patches, in pixels (at least 16).
    seed : int, default=0
        Seed of the patches and of the random parts of a shift (noise).

    Returns
    -------
    X_source : ndarray of shape (12 * n_per_region, size, size, 3), dtype uint8
        The labelled source patches, unaltered, RGB.
    y_source : ndarray of shape (12 * n_per_region,), dtype int
        Their classes, ``6 * photo + 3 * row + column``.
    X_target : ndarray of shape (12 * n_target_per_region, size, size, 3), dtype uint8
        The target patches, altered by ``family``.
    y_target : ndarray of shape (12 * n_target_per_region,), dtype int
        The target's classes: for scoring only (hide them from ``fit``).

    Examples
    --------
    >>> from sktransfer.datasets import load_photo_shift
    >>> X_source, y_source, X_target, y_target = load_photo_shift("jpeg", severity=4)
    >>> X_source.shape, X_target.shape
    ((120, 64, 64, 3), (240, 64, 64, 3))
    """
    if family not in SHIFT_FAMILIES:
        raise ValueError(f"family must be one of {SHIFT_FAMILIES}, got {family!r}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be an integer from 1 to 5, got {severity!r}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    streams = np.random.SeedSequence(seed).spawn(3)
    source_seed, target_seed = (int(s.generate_state(1)[0]) for s in streams[:2])
    X_source, y_source = load_region_patches(n_per_region, size=size, seed=source_seed)
    X_target, y_target = load_region_patches(n_target_per_region, size=size,
                                             seed=target_seed)
    rng = np.random.default_rng(streams[2])
    shifted = np.stack([_shift(x, family, severity, rng) for x in X_target])
    return X_source, y_source, shifted, y_target


def _shift(image: np.ndarray, family: str, severity: int,
           rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB image altered by ``family`` at ``severity`` (1-5)."""
    import io

    from PIL import Image, ImageFilter, ImageOps

    s = severity - 1
    x = image.astype(np.float32) / 255
    if family == "greyscale":
        grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        x = x + (grey[..., None] - x) * (severity / 5)
    elif family == "blur":
        radius = (0.5, 0.8, 1.2, 1.8, 2.6)[s] * image.shape[0] / 64
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius))
        x = np.asarray(blurred, dtype=np.float32) / 255
    elif family == "noise":
        x = x + rng.normal(0, (0.08, 0.12, 0.18, 0.26, 0.38)[s], size=x.shape)
    elif family == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=(25, 18, 15, 10, 7)[s])
        x = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    elif family == "contrast":
        c = (0.4, 0.3, 0.2, 0.1, 0.05)[s]
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * c + mean
    elif family == "sketch":
        grey = ImageOps.grayscale(Image.fromarray(image))
        edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), dtype=np.float32)
        edges = edges[1:-1, 1:-1]  # the filter outlines the image's own border: drop it
        edges = np.pad(edges / max(float(edges.max()), 1.0), 1)  # autocontrast
        sketch = 1 - edges[..., None]
        x = x + (np.repeat(sketch, 3, axis=2) - x) * (0.6, 0.7, 0.8, 0.9, 1.0)[s]
    else:  # illumination
        x = x ** (1.4, 1.8, 2.2, 2.6, 3.0)[s] * np.array([1.0, 0.85, 0.65], dtype=np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


__all__ = ["SHIFT_FAMILIES", "held_out_combos", "load_captioned_shapes", "load_digits_shift",
           "load_photo_collage", "load_photo_shift", "load_region_patches"]
