"""Preprocessing: the weights' own resize, crop and normalisation combined with a user's
overrides."""

from __future__ import annotations

from ..images import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


def make_preprocessing(
    base: dict | None,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: tuple | None = None,
    std: tuple | None = None,
) -> Preprocessing:
    """Combine the weights' own preprocessing (``base``) with user overrides."""
    base = dict(base or {"resize_size": 256, "crop_size": 224,
                         "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    if image_size is not None:
        ratio = base["resize_size"] / base["crop_size"]
        base["crop_size"] = int(image_size)
        base["resize_size"] = int(resize_size) if resize_size is not None else round(
            image_size * ratio)
    elif resize_size is not None:
        base["resize_size"] = int(resize_size)
    if base["resize_size"] < base["crop_size"]:
        raise ValueError(
            f"resize_size={base['resize_size']} is smaller than the crop size "
            f"{base['crop_size']}"
        )
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            value = tuple(float(v) for v in value)
            if len(value) != 3:
                raise ValueError(f"{key} must have 3 values (R, G, B), got {value}")
            base[key] = value
    if any(s <= 0 for s in base["std"]):
        raise ValueError(f"std values must be positive, got {base['std']}")
    return Preprocessing(**base)
