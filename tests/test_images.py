"""Inputs as users hold them, and clear errors for bad ones (sktransfer.images)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sktransfer import ImageInputError, PretrainedFeatureExtractor
from sktransfer.images import Preprocessing, as_image_source, iter_batches, open_image

PREP = Preprocessing(resize_size=16, crop_size=16)


@pytest.fixture
def extractor(tiny_model):
    return PretrainedFeatureExtractor(tiny_model, image_size=16, resize_size=16).fit()


# ------------------------------------------------------------------ accepted forms
def test_paths_pil_arrays_and_series_give_same_embeddings(extractor, image_files):
    from_paths = extractor.transform([str(p) for p in image_files])
    from_pathlib = extractor.transform(image_files)
    pils = [Image.open(p) for p in image_files]
    from_pil = extractor.transform(pils)
    from_series = extractor.transform(pd.Series([str(p) for p in image_files], index=range(10, 16)))
    from_frame = extractor.transform(pd.DataFrame({"path": [str(p) for p in image_files]}))
    assert from_paths.shape == (6, 16) and from_paths.dtype == np.float32
    for other in (from_pathlib, from_series, from_frame):
        np.testing.assert_array_equal(other, from_paths)
    # JPEG files are decoded by torchvision and resized as tensors, PIL images by PIL:
    # the pixels agree, the resampling differs by rounding only
    np.testing.assert_allclose(from_pil, from_paths, atol=2e-3)


def test_array_layouts_agree(extractor, rgb_uint8):
    nhwc = extractor.transform(rgb_uint8)
    nchw_float = extractor.transform(rgb_uint8.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    tensor = extractor.transform(torch.from_numpy(rgb_uint8).permute(0, 3, 1, 2).contiguous())
    listed = extractor.transform(list(rgb_uint8))
    for other in (tensor, listed):
        np.testing.assert_allclose(other, nhwc, rtol=1e-5, atol=1e-5)
    # float images are resized in float, uint8 ones in uint8: only rounding differs
    np.testing.assert_allclose(nchw_float, nhwc, atol=2e-3)


def test_grayscale_becomes_three_equal_channels(extractor, rgb_uint8):
    gray = rgb_uint8[..., 0]
    as_nhw = extractor.transform(gray)
    as_rgb = extractor.transform(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_allclose(as_nhw, as_rgb, rtol=1e-5, atol=1e-5)


def test_rgba_alpha_dropped_for_arrays(extractor, rgb_uint8):
    alpha = np.full((*rgb_uint8.shape[:3], 1), 7, dtype=np.uint8)
    np.testing.assert_allclose(
        extractor.transform(np.concatenate([rgb_uint8, alpha], axis=-1)),
        extractor.transform(rgb_uint8), rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize(
    "mode", ["L", "LA", "P", "PA_transparent", "RGBA", "I;16", "I", "F", "CMYK", "1"]
)
def test_every_pil_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 10, 3), np.uint8))
    if mode == "PA_transparent":
        img = base.convert("P")
        img.info["transparency"] = 0
    elif mode in ("I;16", "I", "F"):
        img = Image.fromarray(np.arange(120, dtype=np.uint16).reshape(12, 10) * 500)
        assert img.mode == "I;16"
        if mode != "I;16":
            img = img.convert(mode)
    else:
        img = base.convert(mode)
    src = as_image_source([img])
    out = src.read(0)
    assert out.mode == "RGB" and out.size == (10, 12)
    if mode.startswith("I") or mode == "F":  # 16-bit range is scaled, not clipped
        arr = np.asarray(out)[..., 0]
        assert arr.max() > 200 and arr.min() < 10


def test_mixed_size_files_resized_to_crop(image_files):
    batches = list(iter_batches(as_image_source(image_files), PREP, batch_size=4))
    assert [start for start, _ in batches] == [0, 4]
    assert batches[0][1].shape == (4, 3, 16, 16) and batches[1][1].shape == (2, 3, 16, 16)


def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :15] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    shown = open_image(path)
    assert shown.size == (10, 30)  # width, height swapped by the orientation tag
    top = np.asarray(shown)[:15].mean()
    bottom = np.asarray(shown)[15:].mean()
    assert top > 200 > 50 > bottom


def test_decoding_runs_ahead_in_worker_threads_with_bounded_memory(image_files):
    reads: list[str] = []

    class Recording(type(as_image_source(image_files))):
        def read(self, index):
            reads.append(threading.current_thread().name)
            return super().read(index)

    src = Recording(items=image_files * 10)  # 60 images
    gen = iter_batches(src, PREP, batch_size=4, n_workers=2, prefetch=2)
    next(gen)
    # Streaming: after the first batch, at most (prefetch + 1) batches were decoded (+1 queued).
    assert len(reads) <= 4 * 4
    assert all(name != threading.main_thread().name for name in reads)
    rest = list(gen)
    assert len(reads) == 60 and sum(len(b) for _, b in rest) == 56


def test_input_never_mutated(extractor, rgb_uint8, image_files):
    float_x = rgb_uint8.transpose(0, 3, 1, 2)[:, :, :16, :16].astype(np.float32) / 255
    snapshot = float_x.copy()
    tensor_x = torch.from_numpy(float_x.copy())
    tensor_snapshot = tensor_x.clone()
    paths = [str(p) for p in image_files]
    paths_snapshot = list(paths)
    extractor.transform(float_x)
    extractor.transform(tensor_x)
    extractor.transform(paths)
    np.testing.assert_array_equal(float_x, snapshot)
    assert torch.equal(tensor_x, tensor_snapshot)
    assert paths == paths_snapshot


# ------------------------------------------------------------------ bad inputs
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_missing_file_named(extractor, image_files, tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageInputError, match=r"X\[2\] \('.*nope\.jpg'\): file not found"):
        extractor.transform([image_files[0], image_files[1], missing])


def test_zero_byte_file_named(extractor, image_files, tmp_path):
    empty = _write(tmp_path / "empty.png", b"")
    with pytest.raises(ImageInputError, match=r"X\[1\] .*empty\.png.*zero-byte"):
        extractor.transform([image_files[0], empty])


def test_non_image_file_named(extractor, tmp_path):
    text = _write(tmp_path / "notes.jpg", b"this is not an image\n" * 10)
    with pytest.raises(ImageInputError, match=r"X\[0\] .*notes\.jpg.*not a readable image"):
        extractor.transform([text])


def test_truncated_file_named(extractor, image_files, tmp_path):
    data = Path(image_files[0]).read_bytes()
    cut = _write(tmp_path / "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageInputError, match=r"X\[1\] .*cut\.jpg.*corrupt or truncated"):
        extractor.transform([image_files[0], cut])


def test_directory_named(extractor, tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(ImageInputError, match=r"X\[0\] .*sub.*directory"):
        extractor.transform([tmp_path / "sub"])


@pytest.mark.parametrize("bad", ["hello", "   "])
def test_string_that_is_not_a_path(extractor, image_files, bad):
    with pytest.raises(ImageInputError, match=r"X\[1\]"):
        extractor.transform([image_files[0], bad])


def test_single_string_rejected(extractor, image_files):
    with pytest.raises(ImageInputError, match="single str.*wrap it in a list"):
        extractor.transform(str(image_files[0]))


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((4, 16), np.uint8), r"shape \(4, 16\)"),
        (np.zeros((2, 3, 4, 4, 4), np.float32), r"shape \(2, 3, 4, 4, 4\)"),
        (np.zeros((2, 8, 8, 3), np.int64), "dtype int64.*uint8.*float"),
        (np.zeros((2, 8, 8, 3), bool), "dtype bool"),
        (np.zeros((2, 8, 8), np.float32), "3-D array is read as NHW grayscale and must be uint8"),
        (np.zeros((2, 5, 8, 8), np.float32), "NCHW with 1, 3 or 4 channels"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
        ([], "empty"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "dtype torch.int32"),
        ([np.zeros((8, 8), np.int16)], r"X\[0\] has dtype int16"),
        ([None], r"X\[0\] is missing"),
        ([3.5], r"X\[0\] has unsupported type float"),
        ({"a": 1}, "unsupported type dict"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), "DataFrame with 2 columns"),
    ],
)
def test_bad_arrays_and_containers(extractor, X, message):
    with pytest.raises(ImageInputError, match=message):
        extractor.transform(X)


def test_nan_named_by_index(extractor):
    X = np.zeros((5, 3, 8, 8), np.float32)
    X[3, 1, 2, 2] = np.nan
    with pytest.raises(ImageInputError, match=r"X\[3\] contains NaN"):
        extractor.transform(X)
    with pytest.raises(ImageInputError, match=r"X\[3\] contains NaN"):
        extractor.transform(torch.from_numpy(X))
    with pytest.raises(ImageInputError, match=r"X\[3\] contains NaN"):
        extractor.transform(list(X))


def test_errors_are_value_errors_not_torch_errors(extractor):
    # ImageInputError subclasses ValueError, so sklearn's error handling applies.
    with pytest.raises(ValueError):
        extractor.transform(np.zeros((1, 7, 8, 8), np.float32))


# ------------------------------------------------------------------ JPEG fast path
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_fast_path_gives_the_same_pixels_as_pil(tmp_path, mode):
    from sktransfer.images import decode_file

    arr = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(arr).convert(mode).save(path, quality=95)
    fast = decode_file(path)
    assert isinstance(fast, torch.Tensor) and fast.shape == (3, 30, 40)
    reference = np.asarray(open_image(path)).transpose(2, 0, 1)
    np.testing.assert_array_equal(fast.numpy(), reference)


def test_other_formats_behind_a_jpg_name_are_read_by_pil(tmp_path):
    from sktransfer.images import decode_file

    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(np.full((5, 6, 3), 200, np.uint8)).save(path, format="PNG")
    img = decode_file(path)
    assert isinstance(img, Image.Image) and np.asarray(img).mean() == 200


def test_one_pixel_wide_uint8_images_resize_like_floats():
    """torch's uint8 resize misreads size-1 dimensions' strides; sktransfer works around it."""
    rgb = np.array([[[162, 10, 207]], [[69, 4, 233]]], dtype=np.uint8)  # 2 x 1 pixels
    prep = Preprocessing(16, 16)
    as_uint8 = prep.resize_crop(as_image_source(rgb[None]).read_batch(0, 1)).float()
    as_float = prep.resize_crop(torch.from_numpy(rgb / 255).permute(2, 0, 1)[None].float())
    assert (as_uint8 - 255 * as_float).abs().max() < 1


def test_flipped_array_views_are_read_like_their_copies():
    from sktransfer import PretrainedFeatureExtractor

    from ._helpers import tiny_cnn

    X = np.random.default_rng(0).integers(0, 256, size=(3, 12, 14, 3), dtype=np.uint8)
    view = X[:, ::-1, ::-1]  # negative strides: what X[..., ::-1] slicing gives users
    ext = PretrainedFeatureExtractor(tiny_cnn(), image_size=8, resize_size=8).fit()
    np.testing.assert_array_equal(ext.transform(view), ext.transform(view.copy()))


def test_training_and_extraction_prepare_each_image_identically(image_files, rgb_uint8):
    """One per-image path: the fine-tuners' dataset gives the extractor's batches."""
    import torch

    from sktransfer._training import ImageDataset
    from sktransfer.images import Preprocessing, as_image_source, iter_batches

    prep = Preprocessing(resize_size=18, crop_size=16)
    for X in (image_files, rgb_uint8, torch.rand(3, 3, 20, 22, dtype=torch.float64)):
        source = as_image_source(X)
        extracted = torch.cat([batch for _, batch in iter_batches(source, prep, 4)])
        dataset = ImageDataset(source, prep)
        trained = torch.stack([dataset[i][0] for i in range(len(dataset))])
        assert trained.dtype == extracted.dtype
        assert torch.equal(trained, extracted)
