"""Synthetic captioned images of coloured shapes, the data of the tiny test CLIP.

Each image is one shape (``SHAPES``) in one colour (``COLOURS``) at one place (``POSITIONS``)
on a noisy grey background, with jitter in the shape's size, rotation, place and colour, so
that telling the classes apart takes a model that has learnt something. Its caption says all
three, e.g. ``"a red circle on the left"``. The images depend only on the seed (numpy and
PIL, no torch), so tests and the script that trains the tiny CLIP
(``tools/train_tiny_clip.py``) draw the same images.

:func:`held_out_combos` splits the colour-shape combinations into those a model sees in
training and some it never sees, to check that zero-shot classification composes colour and
shape rather than remembering pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
"""The colour names, in the order of :data:`COLOUR_RGB`."""

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (45, 165, 65),
    "blue": (45, 85, 215),
    "yellow": (225, 205, 45),
    "purple": (145, 65, 185),
}
"""The mean RGB value of each colour; each image jitters it."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""The shape names."""

POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
"""The position names."""

POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
"""How a caption says each position."""

# centre of the shape, as fractions of the image side: (x range, y range) per position; the
# four boxes are disjoint, so the position is never ambiguous
_CENTRES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "left": ((0.20, 0.33), (0.38, 0.62)),
    "right": ((0.67, 0.80), (0.38, 0.62)),
    "top": ((0.38, 0.62), (0.20, 0.33)),
    "bottom": ((0.38, 0.62), (0.67, 0.80)),
}
_RADIUS = (0.13, 0.19)  # the shape's radius, as fractions of the image side
_SUPERSAMPLE = 4  # drawn this many times larger, then downsampled, for smooth edges
_COLOUR_JITTER = 20  # each RGB channel of the shape moves by up to this much
_BACKGROUND = (95, 165)  # range of the background's grey level
_BACKGROUND_TINT = 12  # each channel of the background moves by up to this much
_NOISE_STD = 6.0  # standard deviation of the per-pixel Gaussian noise
# an unnamed colour is this far (RGB, Euclidean) from every named colour and the background
_UNNAMED_FROM_NAMED = 100.0
_UNNAMED_FROM_BACKGROUND = 80.0


def all_combos() -> list[tuple[str, str]]:
    """All colour-shape combinations, colour-major.

    Returns
    -------
    list of (str, str)
        ``(colour, shape)`` pairs, ``len(COLOURS) * len(SHAPES)`` of them.
    """
    return [(colour, shape) for colour in COLOURS for shape in SHAPES]


def combo_name(colour: str, shape: str) -> str:
    """The class name of a colour-shape combination, e.g. ``"red circle"``.

    Parameters
    ----------
    colour : str
        One of :data:`COLOURS`.
    shape : str
        One of :data:`SHAPES`.

    Returns
    -------
    str
    """
    return f"{colour} {shape}"


def caption(colour: str | None, shape: str | None, position: str | None,
            *, noun: str = "shape") -> str:
    """The caption of an image, or of what is known of it.

    Parameters
    ----------
    colour : str or None
        One of :data:`COLOURS`, or None to leave the colour unsaid.
    shape : str or None
        One of :data:`SHAPES`, or None to say ``noun`` instead.
    position : str or None
        One of :data:`POSITIONS`, or None to leave the position unsaid.
    noun : str, default="shape"
        The word that stands for an unsaid shape.

    Returns
    -------
    str
        E.g. ``"a red circle on the left"``, ``"a red shape"``, ``"a circle at the top"``.
    """
    words = [] if colour is None else [colour]
    words.append(noun if shape is None else shape)
    if position is not None:
        words.append(POSITION_PHRASES[position])
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def held_out_combos(n_held_out: int = 4, *,
                    seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split the colour-shape combinations into seen and never-seen ones.

    The held-out combinations have distinct colours and cycle through the shapes, so every
    colour and every shape still appears in some seen combination.

    Parameters
    ----------
    n_held_out : int, default=4
        How many combinations to hold out, at most ``len(COLOURS)``.
    seed : int, default=0
        Seed of the choice.

    Returns
    -------
    seen : list of (str, str)
        The combinations to train on, in :func:`all_combos` order.
    held_out : list of (str, str)
        The combinations never trained on, in :func:`all_combos` order.

    Raises
    ------
    ValueError
        If ``n_held_out`` is negative or more than ``len(COLOURS)``.
    """
    if not 0 <= n_held_out <= len(COLOURS):
        raise ValueError(f"n_held_out must be in [0, {len(COLOURS)}], got {n_held_out}")
    rng = np.random.default_rng(seed)
    colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))]
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    out = {(colours[i], shapes[i % len(shapes)]) for i in range(n_held_out)}
    combos = all_combos()
    return [c for c in combos if c not in out], [c for c in combos if c in out]


def _polygon(shape: str, radius: float, angle: float) -> list[tuple[float, float]]:
    """The outline of a non-circle shape around the origin, rotated by ``angle`` radians."""
    if shape == "square":
        half = radius * 0.85
        points = [(-half, -half), (half, -half), (half, half), (-half, half)]
    elif shape == "triangle":
        r = radius * 1.15
        points = [(r * math.sin(a), -r * math.cos(a))
                  for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    elif shape == "cross":
        a, b = radius, radius * 0.33
        points = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                  (-b, b), (-a, b), (-a, -b), (-b, -b)]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    cos, sin = math.cos(angle), math.sin(angle)
    return [(x * cos - y * sin, x * sin + y * cos) for x, y in points]


def _unnamed_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour far from every named colour and from ``background``."""
    named = np.array(list(COLOUR_RGB.values()), dtype=float)
    while True:
        rgb = rng.integers(0, 256, size=3).astype(float)
        if (np.linalg.norm(named - rgb, axis=1).min() >= _UNNAMED_FROM_NAMED
                and np.linalg.norm(background - rgb) >= _UNNAMED_FROM_BACKGROUND):
            return rgb


def _draw_one(rng: np.random.Generator, size: int, colour: str | None, shape: str,
              position: str) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of ``shape`` in ``colour`` (None: unnamed)."""
    big = size * _SUPERSAMPLE
    grey = rng.uniform(*_BACKGROUND)
    tint = rng.uniform(-_BACKGROUND_TINT, _BACKGROUND_TINT, size=3)
    background = np.rint(np.clip(grey + tint, 0, 255))
    image = Image.new("RGB", (big, big), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(image)

    if colour is None:
        base = _unnamed_colour(rng, background)
    else:
        base = np.array(COLOUR_RGB[colour], dtype=float)
    fill_jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
    fill = tuple(int(v) for v in np.clip(base + fill_jitter, 0, 255))
    (x_lo, x_hi), (y_lo, y_hi) = _CENTRES[position]
    cx = rng.uniform(x_lo, x_hi) * big
    cy = rng.uniform(y_lo, y_hi) * big
    radius = rng.uniform(*_RADIUS) * big
    angle = rng.uniform(-math.pi / 12, math.pi / 12)  # +-15 degrees
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        draw.polygon([(cx + x, cy + y) for x, y in _polygon(shape, radius, angle)], fill=fill)

    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    small = small + rng.normal(0.0, _NOISE_STD, size=small.shape)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def render(n: int, *, seed: int, size: int = 32,
           combos: Sequence[tuple[str, str]] | None = None, unnamed: float = 0.0,
           ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """Draw ``n`` captioned images of coloured shapes.

    Each image's colour-shape combination is drawn uniformly from ``combos`` and its position
    uniformly from :data:`POSITIONS`; or, for a share ``unnamed`` of the images, the shape is
    drawn uniformly from :data:`SHAPES` and its colour is a random one, far from every named
    colour, that no caption names. The output depends only on the arguments.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Seed of everything random: combination, position, size, rotation, colour jitter,
        background and noise.
    size : int, default=32
        Height and width of the images, in pixels.
    combos : sequence of (str, str), optional
        The ``(colour, shape)`` combinations to draw from, uniformly (list one twice to draw
        it twice as often); all of them by default.
    unnamed : float, default=0.0
        Probability that an image's shape has an unnamed colour. Shapes in many colours
        teach a model shape apart from colour, so that it recognises a shape in a named colour
        it never saw that shape in.

    Returns
    -------
    images : ndarray of shape (n, size, size, 3), dtype uint8
        RGB images.
    captions : list of str
        One :func:`caption` per image, e.g. ``"a red circle on the left"``, or
        ``"a circle on the left"`` for an unnamed colour.
    attributes : dict of str to ndarray of shape (n,)
        ``"colour"`` (``""`` for an unnamed one), ``"shape"`` and ``"position"``: each
        image's names (string arrays); ``"combo"``: its :func:`combo_name`, e.g.
        ``"red circle"``, or the shape alone for an unnamed colour.

    Raises
    ------
    ValueError
        If ``n`` is negative, ``size`` is below 8, ``unnamed`` is outside [0, 1], or
        ``combos`` is empty or names an unknown colour or shape.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if not 0.0 <= unnamed <= 1.0:
        raise ValueError(f"unnamed must be in [0, 1], got {unnamed}")
    pairs = all_combos() if combos is None else [tuple(c) for c in combos]
    if not pairs:
        raise ValueError("combos is empty")
    for colour, shape in pairs:
        if colour not in COLOUR_RGB or shape not in SHAPES:
            raise ValueError(f"unknown combination ({colour!r}, {shape!r}); colours are "
                             f"{COLOURS}, shapes {SHAPES}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(pairs), size=n)
    where = rng.integers(0, len(POSITIONS), size=n)
    is_unnamed = rng.random(n) < unnamed
    unnamed_shape = rng.integers(0, len(SHAPES), size=n)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    colours, shapes, positions, captions, names = [], [], [], [], []
    for i in range(n):
        if is_unnamed[i]:
            colour, shape = None, SHAPES[unnamed_shape[i]]
        else:
            colour, shape = pairs[which[i]]
        position = POSITIONS[where[i]]
        images[i] = _draw_one(rng, size, colour, shape, position)
        colours.append(colour or "")
        shapes.append(shape)
        positions.append(position)
        captions.append(caption(colour, shape, position))
        names.append(shape if colour is None else combo_name(colour, shape))
    attributes = {
        "colour": np.array(colours, dtype=str),
        "shape": np.array(shapes, dtype=str),
        "position": np.array(positions, dtype=str),
        "combo": np.array(names, dtype=str),
    }
    return images, captions, attributes
