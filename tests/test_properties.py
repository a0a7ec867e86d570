"""Property-based tests: any shape, dtype, size and channel count gives a correct result or
a clear ImageInputError; never another exception, a hang or a crash."""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sktransfer import FineTuneClassifier, ImageInputError, PretrainedFeatureExtractor

from ._helpers import tiny_cnn

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# What an ImageInputError about an array says; each documented in the user guide.
REASONS = ("dtype", "shape", "channels", "NaN", "float images must be in [0, 1]", "empty",
           "no pixels")
EXTRACTOR = PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16).fit()


@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Fail instead of hanging: SIGALRM interrupts the block after ``seconds``."""
    def fire(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


sizes = st.integers(1, 40)


@st.composite
def valid_arrays(draw) -> np.ndarray:
    """Documented-valid batches: uint8 NHWC/NHW (1, 3, 4 channels), float NCHW in [0, 1]."""
    n, h, w = draw(st.integers(1, 4)), draw(sizes), draw(sizes)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["NHWC", "NHW", "float32", "float64", "float16"]))
    if kind == "NHW":
        return rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    channels = draw(st.sampled_from([1, 3, 4]))
    if kind == "NHWC":
        return rng.integers(0, 256, (n, h, w, channels), dtype=np.uint8)
    return rng.random((n, channels, h, w)).astype(kind)


@st.composite
def any_arrays(draw) -> np.ndarray:
    """Any rank 1-5, any dtype, odd sizes (0 included), channel counts 0-6, odd values."""
    ndim = draw(st.integers(1, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.bool_,
                                  np.float16, np.float32, np.float64, np.complex64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arr = (rng.random(shape) * draw(st.sampled_from([1, 1.3, 255, -1]))).astype(dtype)
    if arr.size and dtype in (np.float16, np.float32, np.float64) and draw(st.booleans()):
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 2.0, -0.5]))
    return arr


def as_uint8_equivalent(arr: np.ndarray) -> np.ndarray | None:
    if arr.dtype.kind != "f":
        return None
    return np.moveaxis(np.round(arr.astype(np.float64) * 255), 1, -1).astype(np.uint8)


@SETTINGS
@given(valid_arrays())
def test_valid_arrays_always_embed_consistently(arr):
    copy = arr.copy()
    with no_hang():
        out = EXTRACTOR.transform(arr)
        singles = EXTRACTOR.transform(list(arr))  # the same images one by one
    assert out.shape == (len(arr), EXTRACTOR.n_features_out_) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(singles, out, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(arr, copy)  # never mutated
    as_uint8 = as_uint8_equivalent(arr)
    if as_uint8 is not None and arr.dtype != np.float16:  # float [0,1] ~ uint8 / 255
        # float images are used as given, uint8 ones quantised: allow half a grey level
        np.testing.assert_allclose(EXTRACTOR.transform(as_uint8), out, atol=0.05, rtol=0.05)


@SETTINGS
@given(any_arrays())
def test_any_array_gives_a_result_or_a_clear_error(arr):
    copy = arr.copy()
    with no_hang():
        try:
            out = EXTRACTOR.transform(arr)
        except ImageInputError as exc:
            message = str(exc)
            assert message.startswith("X"), message
            assert any(reason in message for reason in REASONS), message
        else:
            assert out.shape == (len(arr), EXTRACTOR.n_features_out_)
            assert np.isfinite(out).all()
            assert arr.dtype == np.uint8 or arr.dtype.kind == "f"
    np.testing.assert_array_equal(arr, copy)


@SETTINGS
@given(any_arrays())
def test_any_list_of_arrays_gives_a_result_or_a_clear_error(arr):
    """The same arrays as a list of single images (ragged inputs take this path)."""
    items = list(arr) if arr.ndim > 1 else [arr]
    with no_hang():
        try:
            out = EXTRACTOR.transform(items)
        except ImageInputError as exc:
            assert str(exc).startswith("X"), str(exc)
        else:
            assert out.shape == (len(items), EXTRACTOR.n_features_out_)
            assert np.isfinite(out).all()


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV"]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(MODES), sizes, sizes, st.integers(0, 2**16)),
                min_size=1, max_size=5))
def test_pil_images_of_every_mode_and_size(specs):
    images = []
    for mode, w, h, seed in specs:
        rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(rgb)
        images.append(img.convert(mode) if mode not in ("I;16",) else
                      Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    with no_hang():
        out = EXTRACTOR.transform(images)
    assert out.shape == (len(images), EXTRACTOR.n_features_out_) and np.isfinite(out).all()


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(valid_arrays(), any_arrays()))
def test_fine_tune_classifier_fits_or_refuses_clearly(arr):
    n = len(arr) if arr.ndim else 0
    y = np.array(["a", "b"] * n)[:n]
    clf = FineTuneClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=1,
                             batch_size=4, random_state=0)
    with no_hang():
        try:
            clf.fit(arr, y)
        except ImageInputError as exc:
            assert str(exc).startswith("X"), str(exc)
            return
        except ValueError as exc:  # labels: one image means a single class
            assert "single class" in str(exc) or "labels" in str(exc), str(exc)
            return
        proba = clf.predict_proba(arr)
    assert proba.shape == (n, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("value, message", [
    (255.0, r"X\[0\] has float values in \[0, 255\]; float images must be in \[0, 1\]"),
    (-2.1, r"X\[0\] has float values in \[-2.1, 0\].*before normalisation"),
])
def test_float_images_out_of_range_are_refused(value, message):
    """0-255 floats or already-normalised tensors would embed wrongly without an error."""
    arr = np.zeros((2, 3, 8, 8), dtype=np.float32)
    arr[0, 0, 0, 0] = value
    with pytest.raises(ImageInputError, match=message):
        EXTRACTOR.transform(arr)
    with pytest.raises(ImageInputError, match=message):
        EXTRACTOR.transform(torch.from_numpy(arr))
    with pytest.raises(ImageInputError, match=message):
        EXTRACTOR.transform(list(arr))
