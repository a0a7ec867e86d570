"""Fitted models saved with joblib load in a fresh, offline process with identical output."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor

from ._helpers import offline_env, run_in_fresh_process, tiny_cnn


def test_pipeline_joblib_round_trip_offline_carries_weights(cached_mobilenet, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(10, 36, 36, 3), dtype=np.uint8)
    y = np.array(["cat", "dog"] * 5)
    pipe = make_pipeline(
        PretrainedFeatureExtractor("mobilenet_v3_small", image_size=32), LogisticRegression()
    ).fit(X, y)
    expected = pipe.predict_proba(X)
    model_path = tmp_path / "model.joblib"
    joblib.dump(pipe, model_path)
    # The loading process has no network and an empty hub cache: weights must be in the file.
    got = run_in_fresh_process(model_path, X, tmp_path, offline_env(tmp_path))
    np.testing.assert_array_equal(got, expected)


def _finetune(**params):
    return FineTuneClassifier(tiny_cnn(n_classes=3), image_size=16, resize_size=16,
                              max_epochs=2, random_state=0, **params)


@pytest.mark.parametrize("wrap", ["plain", "pipeline", "grid_search"])
def test_fine_tuned_joblib_round_trip_offline(wrap, tmp_path):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 4)
    model = {
        "plain": lambda: _finetune(unfreeze=1),
        "pipeline": lambda: make_pipeline(_finetune(unfreeze="all")),
        "grid_search": lambda: GridSearchCV(_finetune(), {"unfreeze": [0, 1]}, cv=2),
    }[wrap]().fit(X, y)
    expected = model.predict_proba(X)
    model_path = tmp_path / "model.joblib"
    joblib.dump(model, model_path)
    got = run_in_fresh_process(model_path, X, tmp_path, offline_env(tmp_path))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fine_tuned_on_gpu_loads_on_cpu_only(tmp_path):
    X = np.random.default_rng(1).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    clf = _finetune(unfreeze=1, device="cuda").fit(X, ["a", "b", "c"] * 2)
    gpu_out = clf.predict_proba(X)
    model_path = tmp_path / "gpu.joblib"
    joblib.dump(clf, model_path)
    cpu_out = run_in_fresh_process(model_path, X, tmp_path, offline_env(tmp_path))
    np.testing.assert_allclose(cpu_out, gpu_out, atol=5e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fitted_on_gpu_loads_on_cpu_only(tmp_path):
    X = np.random.default_rng(1).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    ext = PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16, device="auto")
    ext.fit(X)
    gpu_out = ext.transform(X)  # runs on the GPU, then gives it back
    model_path = tmp_path / "gpu.joblib"
    joblib.dump(ext, model_path)
    cpu_out = run_in_fresh_process(model_path, X, tmp_path, offline_env(tmp_path))
    np.testing.assert_allclose(cpu_out, gpu_out, atol=5e-2)
    np.testing.assert_array_equal(ext.transform(X), gpu_out)  # dumping left it as it was


def test_fine_tuned_file_stores_the_weights_once(tmp_path):
    X = np.random.default_rng(3).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    clf = FineTuneClassifier("mobilenet_v3_small", weights=None, image_size=32, max_epochs=1,
                             random_state=0).fit(X, [0, 1] * 4)
    weights_bytes = sum(t.numel() * t.element_size()
                        for t in clf.net_.module_.state_dict().values())
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    assert path.stat().st_size < 1.3 * weights_bytes  # once, plus optimizer and metadata
    loaded = joblib.load(path)
    assert loaded.net_.module is loaded.net_.module_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("old_module, name", [
    ("sktransfer.extractor", "PretrainedFeatureExtractor"),
    ("sktransfer.finetune", "FineTuneClassifier"),
    ("sktransfer.regressor", "FineTuneRegressor"),
])
def test_models_pickled_by_version_0_1_find_their_classes(old_module, name):
    """sktransfer 0.1 pickles name the estimators' former public modules."""
    import io
    import pickle

    import sktransfer

    unpickler = pickle.Unpickler(io.BytesIO(b""))
    with pytest.warns(DeprecationWarning, match=f"{old_module}.{name} moved"):
        cls = unpickler.find_class(old_module, name)
    assert cls is getattr(sktransfer, name)
    assert cls.__module__.startswith("sktransfer._")
    with pytest.raises(AttributeError, match="'Other'"):
        unpickler.find_class(old_module, "Other")
