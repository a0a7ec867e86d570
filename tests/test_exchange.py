"""Pickle-free export/import: safetensors weights + JSON config, identical predictions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor, export_model, import_model
from sktransfer.exchange import read_config

from ._helpers import offline_env, tiny_cnn

X = np.random.default_rng(0).integers(0, 256, size=(12, 40, 36, 3), dtype=np.uint8)
Y = np.array(["cat", "dog", "emu"] * 4)

# Imports an exported file in a new interpreter where unpickling and the network fail.
IMPORTER = textwrap.dedent(
    """
    import pickle, socket, sys
    import numpy as np

    def refuse(*args, **kwargs):
        raise RuntimeError("unpickling or network use during import_model")

    def audit(event, args):
        if event == "pickle.find_class":  # how an unpickled file gets to run code
            raise RuntimeError(f"unpickling looked up {args}")

    pickle.load = pickle.loads = refuse
    socket.socket.connect = socket.create_connection = refuse
    import torch
    torch.load = refuse
    from sktransfer import import_model
    sys.addaudithook(audit)
    model = None
    if len(sys.argv) > 4:
        from tests._helpers import tiny_cnn
        model = tiny_cnn(seed=99)  # the architecture; its weights get replaced
    est = import_model(sys.argv[1], model=model)
    X = np.load(sys.argv[2])
    out = est.predict_proba(X) if hasattr(est, "predict_proba") else est.transform(X)
    np.save(sys.argv[3], out)
    if hasattr(est, "classes_"):
        np.save(sys.argv[3] + ".classes.npy", est.classes_)
    """
)


def flip(img: torch.Tensor) -> torch.Tensor:
    return img.flip(-1)


def import_elsewhere(path: Path, tmp_path: Path, custom: bool = False) -> np.ndarray:
    x_path, out_path = tmp_path / "X.npy", tmp_path / "out.npy"
    np.save(x_path, X)
    args = [sys.executable, "-c", IMPORTER, str(path), str(x_path), str(out_path)]
    result = subprocess.run(args + (["custom"] if custom else []), env=offline_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return np.load(out_path)


def test_fine_tuned_torchvision_model_round_trip_is_exact(tmp_path):
    clf = FineTuneClassifier("mobilenet_v3_small", weights=None, image_size=32, unfreeze=1,
                             freeze_epochs=1, max_epochs=2, random_state=0).fit(X, Y)
    path = export_model(clf, tmp_path / "clf.safetensors")
    np.testing.assert_array_equal(import_elsewhere(path, tmp_path), clf.predict_proba(X))
    np.testing.assert_array_equal(np.load(str(tmp_path / "out.npy") + ".classes.npy"),
                                  clf.classes_)
    loaded = import_model(path)
    assert loaded.get_params() == clf.get_params()
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.layer_groups_ == clf.layer_groups_ and loaded.n_epochs_ == 2
    assert loaded.summary() == clf.summary()
    assert loaded.precision_ == clf.precision_  # what training computed in, not resolved here
    # what the file holds: tensors, and a readable JSON config; no pickle
    config = read_config(path)
    assert config["estimator"] == "FineTuneClassifier"
    assert config["fitted"]["classes"] == ["cat", "dog", "emu"]
    assert b"\x80\x04" not in path.read_bytes()[:4096]  # no pickle protocol header


def test_custom_module_needs_its_architecture_and_gets_the_weights(tmp_path):
    clf = FineTuneClassifier(tiny_cnn(), image_size=16, max_epochs=2, unfreeze="all",
                             freeze_epochs=0, random_state=0, augment=flip).fit(X, Y)
    path = export_model(clf, tmp_path / "custom.safetensors")
    with pytest.raises(ValueError, match=r"custom module \(torch.nn.modules.container.Sequential\)"
                                         r".*pass model="):
        import_model(path)
    np.testing.assert_array_equal(import_elsewhere(path, tmp_path, custom=True),
                                  clf.predict_proba(X))
    architecture = tiny_cnn(seed=5)  # (seeds torch's generator itself)
    rng = torch.get_rng_state()
    loaded = import_model(path, model=architecture)
    assert torch.equal(torch.get_rng_state(), rng)  # the head's random init is private
    assert loaded.augment is False  # training-only code is not exported
    flagged = clf.set_params(augment=True).fit(X, Y)
    export_model(flagged, tmp_path / "flag.safetensors")
    assert read_config(tmp_path / "flag.safetensors")["params"]["augment"] is True  # data


def test_feature_extractor_round_trip_keeps_named_weights(cached_mobilenet, tmp_path):
    ext = PretrainedFeatureExtractor("mobilenet_v3_small", image_size=32,
                                     layer=["features.3", "features.12"]).fit()
    path = export_model(ext, tmp_path / "ext.safetensors")
    np.testing.assert_array_equal(import_elsewhere(path, tmp_path), ext.transform(X))
    loaded = import_model(path)
    assert loaded.backbone_.weights_id == ext.backbone_.weights_id  # cache keys unchanged
    assert loaded.n_features_out_ == ext.n_features_out_
    np.testing.assert_array_equal(loaded.get_feature_names_out(), ext.get_feature_names_out())
    original = make_pipeline(ext, LogisticRegression()).fit(X, Y)
    imported = make_pipeline(loaded, LogisticRegression()).fit(X, Y)
    np.testing.assert_array_equal(imported.predict_proba(X), original.predict_proba(X))


def test_export_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(NotFittedError):
        export_model(FineTuneClassifier(), tmp_path / "x.safetensors")
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), image_size=16),
                         LogisticRegression())
    with pytest.raises(TypeError, match="got Pipeline"):
        export_model(pipe, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_bad_files_are_clear_errors(tmp_path):
    clf = FineTuneClassifier(tiny_cnn(), image_size=16, max_epochs=1, random_state=0)
    good = export_model(clf.fit(X, Y), tmp_path / "good.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        import_model(tmp_path / "missing.safetensors")
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(ValueError, match=rf"{text} is not a safetensors file"):
        import_model(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not an sktransfer export"):
        import_model(plain)
    joblib_file = tmp_path / "model.joblib"
    joblib.dump(clf, joblib_file)
    with pytest.raises(ValueError, match="is not a safetensors file"):
        import_model(joblib_file)  # never unpickled
    # weights of another architecture
    tensors = {"body.net.0.weight": torch.zeros(8, 3, 5, 5)}
    config = read_config(good)
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"sktransfer": json.dumps(config)})
    with pytest.raises(ValueError, match=r"bad.safetensors: the weights do not fit"):
        import_model(tmp_path / "bad.safetensors", model=tiny_cnn())
    newer = {**config, "version": 99}
    save_file(tensors, tmp_path / "new.safetensors", metadata={"sktransfer": json.dumps(newer)})
    with pytest.raises(ValueError, match="newer sktransfer"):
        import_model(tmp_path / "new.safetensors", model=tiny_cnn())


def test_exchange_uses_only_the_estimators_export_restore_pair():
    import inspect
    import re

    from sktransfer import exchange

    source = inspect.getsource(exchange)
    # estimator.<private member> other than the __sktransfer_export/restore/architecture__
    # protocol
    reach_ins = re.findall(
        r"estimator\.(?!__sktransfer_(?:export|restore|architecture)__)_\w+", source)
    assert reach_ins == [], reach_ins
    assert "estimator.__sktransfer_export__()" in source
    assert "estimator.__sktransfer_restore__(" in source
