"""The content-keyed embedding cache: each image embedded once, never a wrong answer."""

from __future__ import annotations

import pickle
import shutil

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from sktransfer import PretrainedFeatureExtractor
from sktransfer._cache import EmbeddingCache

from ._helpers import tiny_cnn


class CountingCNN(nn.Module):
    """tiny_cnn that counts the images it embeds, across copies and clones."""

    seen = 0

    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = tiny_cnn(seed=seed)

    def forward(self, x):
        if x.any():  # the all-zero probes run at fit to size the output do not count
            type(self).seen += len(x)
        return self.net(x)


@pytest.fixture(autouse=True)
def reset_counter():
    CountingCNN.seen = 0


def extractor(cache, model=None, **params):
    params = {"image_size": 16, "resize_size": 16, **params}
    return PretrainedFeatureExtractor(model or CountingCNN(), cache=cache, **params)


def test_second_transform_hits_the_cache_with_identical_output(tmp_path, rgb_uint8):
    ext = extractor(tmp_path).fit()
    first = ext.transform(rgb_uint8)
    assert CountingCNN.seen == 6
    second = ext.transform(rgb_uint8)
    assert CountingCNN.seen == 6  # no forward pass
    np.testing.assert_array_equal(first, second)
    uncached = extractor(None).fit().transform(rgb_uint8)
    np.testing.assert_allclose(first, uncached, atol=1e-6)


def test_only_new_images_are_embedded(tmp_path, rgb_uint8):
    ext = extractor(tmp_path).fit()
    ext.transform(rgb_uint8[:4])
    out = ext.transform(rgb_uint8)  # 4 hits, 2 misses
    assert CountingCNN.seen == 6
    np.testing.assert_allclose(out, extractor(None).fit().transform(rgb_uint8), atol=1e-6)


def test_grid_search_embeds_each_image_once(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 16, 16, 3), dtype=np.uint8)
    y = np.arange(30) % 3
    grid = GridSearchCV(make_pipeline(extractor(tmp_path / "cache"), LogisticRegression()),
                        {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=3)
    grid.fit(X, y)
    # 3 candidates x 3 folds (fit + score) + refit would be 270 images without the cache
    assert CountingCNN.seen == 30


def test_key_is_content_not_path(tmp_path, image_files):
    ext = extractor(tmp_path / "cache").fit()
    ext.transform(image_files)
    copies = []
    for path in image_files:
        copy = tmp_path / f"copy_{path.name}"
        shutil.copy(path, copy)
        copies.append(copy)
    ext.transform(copies)  # renamed copies: same bytes, hits
    assert CountingCNN.seen == 6
    edited = np.asarray(Image.open(copies[1])).copy()
    edited[0, 0] = 255 - edited[0, 0]
    Image.fromarray(edited).save(copies[1])  # same path, new content: a miss
    ext.transform(copies)
    assert CountingCNN.seen == 7


@pytest.mark.parametrize(
    "change",
    [
        {"layer": "net.2"},
        {"image_size": 12, "resize_size": 12},
        {"mean": (0.5, 0.5, 0.5)},
        {"model": "other weights"},
    ],
)
def test_everything_that_changes_the_embedding_is_in_the_key(tmp_path, rgb_uint8, change):
    extractor(tmp_path).fit().transform(rgb_uint8)
    params = dict(change)
    if params.pop("model", None):
        params["model"] = CountingCNN(seed=1)
    CountingCNN.seen = 0
    changed = extractor(tmp_path, **params).fit()
    out = changed.transform(rgb_uint8)
    assert CountingCNN.seen == 6
    np.testing.assert_allclose(out, extractor(None, **params).fit().transform(rgb_uint8),
                               atol=1e-6)


def test_corrupt_or_truncated_entries_are_recomputed(tmp_path, rgb_uint8):
    ext = extractor(tmp_path).fit()
    expected = ext.transform(rgb_uint8)
    entries = sorted(tmp_path.rglob("*.emb"))
    assert len(entries) == 6
    entries[0].write_bytes(entries[0].read_bytes()[:10])  # truncated
    entries[1].write_bytes(b"garbage" * 20)  # corrupt
    raw = bytearray(entries[2].read_bytes())
    raw[-4:] = np.float32(np.nan).tobytes()  # malformed value
    entries[2].write_bytes(bytes(raw))
    CountingCNN.seen = 0
    np.testing.assert_array_equal(ext.transform(rgb_uint8), expected)
    assert CountingCNN.seen == 3
    CountingCNN.seen = 0
    ext.transform(rgb_uint8)
    assert CountingCNN.seen == 0  # rewritten


def test_writes_are_atomic(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path, "model", 4)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.put("abcdef", np.ones(4, np.float32))
    assert cache.get("abcdef") is None
    assert not list(tmp_path.rglob("*.tmp"))  # no debris
    monkeypatch.undo()
    cache.put("abcdef", np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cache.get("abcdef"), np.arange(4))


def test_joblib_memory_and_pickle(tmp_path, rgb_uint8):
    memory = joblib.Memory(tmp_path / "mem", verbose=0)
    ext = extractor(memory).fit()
    first = ext.transform(rgb_uint8)
    loaded = pickle.loads(pickle.dumps(ext))
    CountingCNN.seen = 0
    np.testing.assert_array_equal(loaded.transform(rgb_uint8), first)
    assert CountingCNN.seen == 0
    assert list((tmp_path / "mem").rglob("*.emb"))
    CountingCNN.seen = 0
    extractor(joblib.Memory(None)).fit().transform(rgb_uint8)  # Memory(None): no cache
    assert CountingCNN.seen == 6


def test_invalid_cache_value(rgb_uint8):
    with pytest.raises(ValueError, match="'cache' parameter .* Got 42"):
        extractor(cache=42).fit()


def test_cache_errors_still_name_the_original_index(tmp_path, image_files):
    ext = extractor(tmp_path / "cache").fit()
    ext.transform(image_files[:2])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"X\[3\] .*bad\.png"):
        ext.transform([*image_files[:2], image_files[2], bad])
    assert torch.is_grad_enabled()
