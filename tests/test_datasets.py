"""Offline data sets: the photo-shift families (source clean, target altered)."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import datasets
from sktransfer.datasets import SHIFT_FAMILIES, load_photo_shift


@pytest.mark.parametrize("family", SHIFT_FAMILIES)
def test_every_family_gives_a_clean_source_and_an_altered_target(family):
    Xs, ys, Xt, yt = load_photo_shift(family, n_per_region=2, n_target_per_region=3, size=32)
    assert Xs.shape == (24, 32, 32, 3) and Xt.shape == (36, 32, 32, 3)
    assert Xs.dtype == Xt.dtype == np.uint8
    assert sorted(set(ys)) == sorted(set(yt)) == list(range(12))
    # the source is the same for every family (only the target's look changes) ...
    other = load_photo_shift("blur" if family != "blur" else "noise", n_per_region=2,
                             n_target_per_region=3, size=32)
    np.testing.assert_array_equal(Xs, other[0])
    np.testing.assert_array_equal(yt, other[3])
    # ... and the target is the same patches, altered differently by each family
    assert not np.array_equal(Xt, other[2])
    again = load_photo_shift(family, n_per_region=2, n_target_per_region=3, size=32)
    for a, b in zip(again, (Xs, ys, Xt, yt), strict=True):
        np.testing.assert_array_equal(a, b)  # seeded: the same task every time


def test_each_shift_does_what_its_name_says():
    rng = np.random.default_rng(0)
    image = datasets.load_region_patches(1, size=64, seed=3)[0][7]  # a flower patch
    x = image.astype(float)

    def shifted(family, severity=5):
        return datasets._shift(image, family, severity, rng).astype(float)

    grey = shifted("greyscale")
    assert np.abs(grey - grey.mean(axis=2, keepdims=True)).max() <= 1  # R = G = B

    def spread(a):  # per channel, about each channel's mean (which contrast keeps)
        return a.std(axis=(0, 1)).mean()

    assert spread(shifted("contrast")) < 0.1 * spread(x)
    assert spread(shifted("contrast", 1)) > spread(shifted("contrast", 3))

    def roughness(a):  # mean absolute difference between neighbouring pixels
        return np.abs(np.diff(a, axis=1)).mean()

    assert roughness(shifted("blur")) < 0.6 * roughness(x)
    assert roughness(shifted("noise")) > 3 * roughness(x)
    assert 0 < np.abs(shifted("jpeg") - x).mean() < 20  # lossy, same picture
    sketch = shifted("sketch")
    assert sketch.mean() > 0.7 * 255 and sketch.min() < 100  # dark lines on white
    dark = shifted("illumination")
    assert dark.mean() < 0.6 * x.mean()
    assert dark[..., 0].mean() > dark[..., 2].mean()  # warm light


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "fog"}, r"family must be one of \('greyscale'"),
    ({"family": "blur", "severity": 0}, "severity must be an integer from 1 to 5"),
    ({"family": "blur", "severity": 2.5}, "severity must be an integer from 1 to 5"),
    ({"family": "blur", "size": 8}, "size must be at least 16"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_photo_shift(**kwargs)
