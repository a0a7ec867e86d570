"""ONNX export (``sktransfer.export_onnx``): one graph from uint8 pixels to the estimator's
outputs, run with onnxruntime and compared with the estimator itself.

The contract test over every public estimator lives in ``test_common``; here: pipelines
and searches, real weights (EfficientNet-Lite0) and timm families, resizing inside the
graph, quantisation, the metadata, errors, the command line and an app without torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from sktransfer import (
    FineTuneClassifier,
    FineTuneRegressor,
    FineTuneSegmenter,
    OnnxModel,
    PretrainedFeatureExtractor,
    export_onnx,
    read_onnx_metadata,
)
from sktransfer.images import Preprocessing

from ._helpers import tiny_cnn

ort = pytest.importorskip("onnxruntime")  # the sktransfer[onnx] extra
pytest.importorskip("skl2onnx")

EXAMPLES = Path(__file__).parents[1] / "examples"
RNG = np.random.default_rng(0)
COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]], dtype=np.uint8)


def coloured(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images of three colours: labels a tiny network learns with clear margins."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    noise = rng.integers(-30, 30, (n, size, size, 3))
    X = np.clip(COLOURS[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return X, y


def run_graph(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images}), strict=True))


def at_input_size(est_prep: Preprocessing, X: np.ndarray) -> np.ndarray:
    """``X`` resized and cropped as the library does: what a graph without resize takes."""
    out = est_prep.resize_crop(torch.from_numpy(X).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).contiguous().numpy()


KW = {"image_size": 16, "resize_size": 20, "precision": "float32"}


@pytest.fixture(scope="module")
def classifier():
    X, y = coloured(30)
    labels = np.array(["red", "green", "blue"])[y]
    return FineTuneClassifier(tiny_cnn(), max_epochs=4, lr=3e-2, random_state=0,
                              **KW).fit(X, labels)


# ------------------------------------------------------------------ pipelines, searches
@pytest.mark.parametrize("tail", [
    [StandardScaler(), LogisticRegression(max_iter=500)],
    [PCA(n_components=4), LogisticRegression(max_iter=500)],
    [StandardScaler(), SVC()],
    [RandomForestClassifier(n_estimators=5, random_state=0)],
    [KNeighborsClassifier(n_neighbors=3)],
], ids=["scaler-logistic", "pca-logistic", "svc", "forest", "knn"])
def test_pipeline_agrees_with_predict_proba(tmp_path, tail):
    X, y = coloured(24)
    labels = np.array([3, 7, 11])[y]  # int64 labels
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW), *tail).fit(X, labels)
    path = export_onnx(pipe, tmp_path / "pipe.onnx")
    X_test, _ = coloured(12, seed=1)
    out = run_graph(path, at_input_size(pipe[0].backbone_.preprocessing, X_test))
    np.testing.assert_array_equal(out["label"], pipe.predict(X_test))
    assert out["label"].dtype == np.int64
    if hasattr(pipe, "predict_proba") and "probabilities" in out:
        np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X_test),
                                   atol=1e-4, rtol=0)
    else:  # SVC without probabilities: its decision scores, named so
        assert "scores" in out and "probabilities" not in out


def test_pipeline_regressor_and_search_export_the_best_estimator(tmp_path):
    X, y = coloured(24)
    target = y * 2.5 - 1.0
    search = GridSearchCV(make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                                        Ridge()), {"ridge__alpha": [0.1, 10.0]}, cv=2)
    search.fit(X, target)
    path = export_onnx(search, tmp_path / "search.onnx")
    out = run_graph(path, at_input_size(Preprocessing(20, 16), X))
    pred = search.predict(X)
    assert out["predictions"].shape == pred.shape  # 1-D, as predict
    np.testing.assert_allclose(out["predictions"], pred, rtol=1e-4, atol=1e-4)
    meta = read_onnx_metadata(path)
    assert meta["task"] == "regressor" and meta["estimator"].startswith("Pipeline(")


def test_pipeline_of_transformers_gives_their_embeddings(tmp_path):
    X, _ = coloured(12)
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW), StandardScaler(),
                         PCA(n_components=4)).fit(X)
    out = run_graph(export_onnx(pipe, tmp_path / "t.onnx"),
                    at_input_size(pipe[0].backbone_.preprocessing, X))
    assert list(out) == ["embeddings"]
    np.testing.assert_allclose(out["embeddings"], pipe.transform(X), atol=1e-4)


def test_final_steps_without_contract_outputs_are_refused_by_name(tmp_path):
    from sklearn.cluster import KMeans

    X, y = coloured(12)
    clusters = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                             KMeans(2, n_init=1, random_state=0)).fit(X)
    with pytest.raises(TypeError, match="'kmeans' .*neither a classifier"):
        export_onnx(clusters, tmp_path / "k.onnx")
    Y = np.stack([y == 0, y == 1], axis=1).astype(int)
    several = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                            KNeighborsClassifier(3)).fit(X, Y)
    with pytest.raises(TypeError, match="'kneighborsclassifier' .*several outputs"):
        export_onnx(several, tmp_path / "m.onnx")
    booleans = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                             LogisticRegression()).fit(X, y == 0)
    with pytest.raises(ValueError, match="int64 or strings"):
        export_onnx(booleans, tmp_path / "b.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def test_search_over_a_fine_tuner_exports_its_best_estimator(tmp_path):
    X, y = coloured(18)
    search = GridSearchCV(FineTuneClassifier(tiny_cnn(), max_epochs=1, freeze_epochs=0,
                                             random_state=0, **KW),
                          {"unfreeze": [0, 1]}, cv=2).fit(X, y)
    path = export_onnx(search, tmp_path / "search.onnx")
    out = run_graph(path, at_input_size(search.best_estimator_.preprocessing_, X))
    np.testing.assert_allclose(out["probabilities"], search.predict_proba(X), atol=1e-4)


# ------------------------------------------------------------------ estimators' variants
def test_multilabel_labels_are_the_indicator_matrix(tmp_path):
    X, y = coloured(24)
    Y = np.stack([y == 0, y != 2], axis=1).astype(int)
    clf = FineTuneClassifier(tiny_cnn(), max_epochs=2, random_state=0, **KW).fit(X, Y)
    out = run_graph(export_onnx(clf, tmp_path / "m.onnx"), at_input_size(clf.preprocessing_, X))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), atol=1e-4)
    np.testing.assert_array_equal(out["label"], clf.predict(X))


def test_two_target_regressor_and_mirror_tta(tmp_path):
    X, y = coloured(24)
    Y = np.stack([y * 1.0, 10.0 - y], axis=1)
    reg = FineTuneRegressor(tiny_cnn(), max_epochs=2, random_state=0, tta=True, **KW).fit(X, Y)
    out = run_graph(export_onnx(reg, tmp_path / "r.onnx"), at_input_size(reg.preprocessing_, X))
    pred = reg.predict(X)
    assert out["predictions"].shape == pred.shape == (24, 2)
    np.testing.assert_allclose(out["predictions"], pred, rtol=1e-4, atol=1e-4)


def test_extractor_layers_export(tmp_path):
    X, _ = coloured(6)
    ext = PretrainedFeatureExtractor(tiny_cnn(), layer=["1", "4"], **KW).fit(X)
    out = run_graph(export_onnx(ext, tmp_path / "e.onnx"),
                    at_input_size(ext.backbone_.preprocessing, X))
    np.testing.assert_allclose(out["embeddings"], ext.transform(X), atol=1e-5)


def test_segmenter_masks_agree_at_every_size_with_resize(tmp_path):
    X, _ = coloured(8, size=20)
    masks = (X[..., 0] > 128).astype(np.int64)
    seg = FineTuneSegmenter(tiny_cnn(), image_size=16, max_epochs=3, lr=3e-2, random_state=0,
                            precision="float32").fit(X, masks)
    path = export_onnx(seg, tmp_path / "s.onnx", resize=True)
    assert read_onnx_metadata(path)["preprocessing"]["interpolation"] == "bilinear"
    model = OnnxModel(path)
    test = [coloured(2, size=s, seed=s)[0][i] for s, i in ((20, 0), (31, 1), (12, 0))]
    for image, mask in zip(test, model.predict(test), strict=True):
        expected = seg.predict(image[None])[0]
        assert mask.shape == expected.shape == image.shape[:2]
        assert np.mean(mask == expected) >= 0.999
    fixed = run_graph(export_onnx(seg, tmp_path / "f.onnx"), X[:, 2:18, 2:18].copy())
    np.testing.assert_array_equal(fixed["mask"], seg.predict(X[:, 2:18, 2:18].copy()))
    np.testing.assert_allclose(fixed["probabilities"], seg.predict_proba(X[:, 2:18, 2:18]),
                               atol=1e-4)


# ------------------------------------------------------------------ real weights, families
@pytest.mark.slow
def test_real_efficientnet_lite0_pipeline_agrees(tmp_path):
    from sklearn.datasets import load_sample_images

    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    photos = load_sample_images().images
    X = np.stack([p[r:r + 96, c:c + 96] for p in photos for r, c in
                  ((0, 0), (100, 200), (200, 300), (300, 100))])
    y = np.repeat([0, 1], 4)
    pipe = make_pipeline(PretrainedFeatureExtractor(efficientnet_lite0(), mean=LITE_MEAN,
                                                    std=LITE_STD, precision="float32"),
                         LogisticRegression(max_iter=1000)).fit(X, y)
    out = run_graph(export_onnx(pipe, tmp_path / "lite0.onnx"),
                    at_input_size(pipe[0].backbone_.preprocessing, X))
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), atol=1e-4)
    np.testing.assert_array_equal(out["label"], pipe.predict(X))


@pytest.mark.parametrize("name", ["convnext_atto", "vit_tiny_patch16_224"])
def test_timm_families_agree(tmp_path, name):
    """timm's ConvNeXt and ViT (random init; bicubic preprocessing): the graph agrees
    within 1e-4, also through OnnxModel's resizing; a ViT quantises dynamically."""
    pytest.importorskip("timm")
    X, y = coloured(12, size=40)
    clf = FineTuneClassifier(f"timm:{name}", weights=None, image_size=32, resize_size=36,
                             max_epochs=1, random_state=0, precision="float32").fit(X, y)
    assert clf.preprocessing_.interpolation.value == "bicubic"
    path = export_onnx(clf, tmp_path / "t.onnx")
    out = run_graph(path, at_input_size(clf.preprocessing_, X))
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(out["probabilities"], proba, atol=1e-4)
    np.testing.assert_array_equal(out["label"], clf.predict(X))
    np.testing.assert_allclose(OnnxModel(path).predict_proba(X), proba, atol=1e-4)
    if name.startswith("vit"):  # matrix products: dynamic int8 needs no calibration
        import onnx

        quantized = export_onnx(clf, tmp_path / "q.onnx", quantize="int8")
        assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load(quantized).graph.node}
        assert read_onnx_metadata(quantized)["quantization"] == "int8 dynamic"
        np.testing.assert_allclose(run_graph(quantized, at_input_size(
            clf.preprocessing_, X))["probabilities"], proba, atol=0.05)


# ------------------------------------------------------------------ resizing in the graph
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_in_graph_is_within_grey_levels_of_the_library(interpolation):
    """Bilinear: every pixel within one grey level of the library's resize; bicubic: all
    but a few in 10,000 (measured: 0.02 %, at most 5 levels, where its kernel overshoots)."""
    from torchvision.transforms import InterpolationMode

    from sktransfer._onnx_parts import resize_graph

    prep = Preprocessing(36, 32, interpolation=InterpolationMode(interpolation))
    session = ort.InferenceSession(resize_graph(prep, False, 18).SerializeToString())
    rng = np.random.default_rng(1)
    diffs = []
    for h, w in [(300, 400), (480, 311), (32, 32), (50, 70), (17, 90)] * 3:
        small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))
        expected = prep.resize_crop(torch.from_numpy(image.copy()).permute(2, 0, 1))
        got = session.run(None, {"images": image[None]})[0][0]
        assert got.shape == (32, 32, 3)
        diffs.append(np.abs(got.astype(int) - expected.permute(1, 2, 0).numpy().astype(int)))
    diffs = np.stack(diffs)
    assert diffs.mean() < 0.3
    if interpolation == "bilinear":
        assert diffs.max() <= 1
    else:
        assert np.mean(diffs > 1) < 0.005 and diffs.max() <= 8


def test_resize_graph_takes_any_size_and_agrees_on_labels(tmp_path, classifier):
    path = export_onnx(classifier, tmp_path / "any.onnx", resize=True)
    model = OnnxModel(path)
    for size in (16, 40, 97):
        X, _ = coloured(6, size=size, seed=size)
        np.testing.assert_array_equal(model.predict(X), classifier.predict(X))
        np.testing.assert_allclose(model.predict_proba(X), classifier.predict_proba(X),
                                   atol=0.02)
    assert read_onnx_metadata(path)["input"]["size"] is None
    image = coloured(1, size=30, seed=4)[0][0]
    as_float = torch.from_numpy(image).permute(2, 0, 1).float() / 255  # a float tensor
    mixed = model.predict_proba([image, as_float])
    np.testing.assert_allclose(mixed[0], mixed[1], atol=1e-6)


# ------------------------------------------------------------------ metadata
def test_metadata_states_the_contract(tmp_path, classifier):
    path = export_onnx(classifier, tmp_path / "c.onnx")
    meta = read_onnx_metadata(path)
    import sktransfer

    assert meta["sktransfer_version"] == sktransfer.__version__
    assert meta["estimator"] == "FineTuneClassifier" and meta["task"] == "classifier"
    assert meta["classes"] == list(classifier.classes_)
    assert meta["outputs"] == ["label", "probabilities"]
    assert meta["input"] == {"name": "images", "dtype": "uint8", "layout": "NHWC",
                             "channels": "RGB", "size": [16, 16]}
    prep = classifier.preprocessing_
    assert meta["preprocessing"]["resize_size"] == prep.resize_size == 20
    assert meta["preprocessing"]["mean"] == list(prep.mean)
    assert meta["backbone"] == {"custom": "torch.nn.modules.container.Sequential"}
    import onnx

    graph = onnx.load(path)
    assert graph.ir_version == 8  # the lowest for opset 18: onnxruntime 1.14 and later
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 18)]
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_onnx_metadata(Path(__file__))


# ------------------------------------------------------------------ quantisation
def test_static_int8_quantisation_keeps_the_labels(tmp_path, classifier):
    X, y = coloured(60, seed=3)
    labels = np.array(["red", "green", "blue"])[y]
    path = export_onnx(classifier, tmp_path / "q.onnx", quantize="int8", calibration=X[:40])
    out = run_graph(path, at_input_size(classifier.preprocessing_, X[40:]))
    assert np.mean(out["label"] == labels[40:]) >= np.mean(
        classifier.predict(X[40:]) == labels[40:]) - 0.05
    import onnx

    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert read_onnx_metadata(path)["quantization"] == "int8 static"


def test_bias_correction_removes_the_mean_shift_of_int8_weights(tmp_path):
    """The corrected graph's outputs drift less from float32 on average than plain int8
    (the empirical bias correction of Nagel et al. 2019)."""
    import onnx

    from sktransfer._onnx_network import export_network
    from sktransfer._onnx_quantize import _calibration_batches, _static

    X, _ = coloured(96, size=16, seed=5)
    ext = PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16,
                                     precision="float32").fit(X)
    deployable = ext.__sktransfer_deploy__()
    onnx.save_model(export_network(deployable, 18, "extractor"), tmp_path / "float.onnx")
    batches = _calibration_batches(deployable, X[:64], batch_size=16)
    shifts = []
    for n_images in (0, 64):
        _static(tmp_path / "float.onnx", tmp_path / f"q{n_images}.onnx", batches, n_images)
        quantized = run_graph(tmp_path / f"q{n_images}.onnx", X[64:])["embeddings"]
        shifts.append(np.abs((quantized - ext.transform(X[64:])).mean(0)).mean())
    assert shifts[1] < 0.7 * shifts[0], shifts


def test_dynamic_int8_quantisation_is_refused_for_convolutions(tmp_path, classifier):
    with pytest.raises(ValueError, match="ConvInteger.*calibration"):
        export_onnx(classifier, tmp_path / "q.onnx", quantize="int8")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("options, message", [
    ({"quantize": "int4"}, "quantize must be one of"),
    ({"calibration": np.zeros((8, 16, 16, 3), np.uint8)}, "only used with quantize"),
    ({"quantize": "int8", "calibration": np.zeros((3, 16, 16, 3), np.uint8)},
     "at least 8 calibration images"),
    ({"opset": 12}, "opset must be an int from 18"),
    ({"resize": "yes"}, "resize must be True or False"),
])
def test_invalid_options_are_refused(tmp_path, classifier, options, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(classifier, tmp_path / "x.onnx", **options)


# ------------------------------------------------------------------ errors
def test_unconvertible_step_is_named(tmp_path):
    from sklearn.feature_selection import SequentialFeatureSelector

    X, y = coloured(12)
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW), SequentialFeatureSelector(
        LogisticRegression(), n_features_to_select=2, cv=2), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="'sequentialfeatureselector' .*no ONNX converter"):
        export_onnx(pipe, tmp_path / "p.onnx")
    X, y = coloured(12)
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                         FunctionTransformer(np.tanh), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="'functiontransformer' .*FunctionTransformer.* "
                                        "cannot be converted"):
        export_onnx(pipe, tmp_path / "p.onnx")


def test_what_cannot_be_exported_is_refused_clearly(tmp_path, classifier):
    X, y = coloured(12)
    no_extractor = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        X.reshape(12, -1), y)
    with pytest.raises(TypeError, match="first step 'standardscaler'.*not a Pretrained"):
        export_onnx(no_extractor, tmp_path / "p.onnx")
    with pytest.raises(TypeError, match="got LogisticRegression"):
        export_onnx(LogisticRegression().fit(X.reshape(12, -1), y), tmp_path / "p.onnx")
    unrefit = GridSearchCV(make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW),
                                         LogisticRegression()), {"logisticregression__C": [1]},
                           cv=2, refit=False).fit(X, y)
    with pytest.raises(ValueError, match="refit=False"):
        export_onnx(unrefit, tmp_path / "p.onnx")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        export_onnx(FineTuneClassifier(tiny_cnn()), tmp_path / "p.onnx")
    crops = FineTuneClassifier(tiny_cnn(), max_epochs=1, tta=3, **KW).fit(X, y)
    with pytest.raises(ValueError, match="tta=3.*set tta=True"):
        export_onnx(crops, tmp_path / "p.onnx")
    floats = FineTuneClassifier(tiny_cnn(), max_epochs=1, **KW).fit(X, y * 1.0)
    with pytest.raises(ValueError, match="int64 or strings"):
        export_onnx(floats, tmp_path / "p.onnx")
    assert not list(tmp_path.glob("*.onnx"))


# ------------------------------------------------------------------ command line, apps
def _folder(tmp_path: Path, n: int = 9, size: int = 30) -> tuple[Path, np.ndarray]:
    X, _ = coloured(n, size=size, seed=7)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(X):
        Image.fromarray(image).save(folder / f"img{i}.png")
    return folder, X


def test_cli_export_then_predict_with_onnxruntime(tmp_path, classifier):
    import joblib

    from sktransfer.cli import main

    joblib.dump(classifier, tmp_path / "model.joblib")
    folder, _ = _folder(tmp_path)
    assert main(["export", str(tmp_path / "model.joblib"), "-o", str(tmp_path / "m.onnx"),
                 "--resize"]) == 0
    assert main(["predict", str(tmp_path / "m.onnx"), str(folder), "-o",
                 str(tmp_path / "onnx.csv")]) == 0
    assert main(["predict", str(tmp_path / "model.joblib"), str(folder), "-o",
                 str(tmp_path / "joblib.csv")]) == 0
    onnx_rows = (tmp_path / "onnx.csv").read_text().splitlines()
    joblib_rows = (tmp_path / "joblib.csv").read_text().splitlines()
    assert len(onnx_rows) == 10 and onnx_rows[0] == joblib_rows[0]
    assert [r.split(",")[:2] for r in onnx_rows] == [r.split(",")[:2] for r in joblib_rows]
    assert main(["export", str(tmp_path / "model.joblib"), "-o", str(tmp_path / "q.onnx"),
                 "--quantize", "int8", "--calibration", str(folder)]) == 0
    assert read_onnx_metadata(tmp_path / "q.onnx")["quantization"] == "int8 static"
    assert main(["export", str(tmp_path / "model.joblib"), "-o",
                 str(tmp_path / "x.onnx"), "--opset", "3"]) == 2


def test_cli_predicts_labels_of_a_graph_without_probabilities(tmp_path):
    import joblib

    from sktransfer.cli import main

    X, y = coloured(12)
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **KW), SVC()).fit(
        X, np.array(["red", "green", "blue"])[y])
    joblib.dump(pipe, tmp_path / "svc.joblib")
    folder, _ = _folder(tmp_path, n=3)
    assert main(["export", str(tmp_path / "svc.joblib"), "-o", str(tmp_path / "s.onnx")]) == 0
    assert main(["predict", str(tmp_path / "s.onnx"), str(folder), "-o",
                 str(tmp_path / "s.csv")]) == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "path,label" and len(rows) == 4
    paths = [r.split(",")[0] for r in rows[1:]]
    assert [r.split(",")[1] for r in rows[1:]] == list(pipe.predict(paths))


def test_example_app_runs_without_torch_or_sklearn(tmp_path, classifier):
    """examples/onnx_app.py in a fresh process where importing torch, torchvision, skorch
    or scikit-learn fails: its labels are the estimator's."""
    folder, _ = _folder(tmp_path)
    path = export_onnx(classifier, tmp_path / "m.onnx")
    blocker = textwrap.dedent(f"""
        import runpy, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"torch", "torchvision", "skorch", "sklearn",
                                           "sktransfer"}}:
                    raise ImportError(f"{{name}} is blocked in this app")
        sys.meta_path.insert(0, Block())
        sys.argv = ["onnx_app.py", {str(path)!r}, {str(folder)!r}]
        runpy.run_path({str(EXAMPLES / "onnx_app.py")!r}, run_name="__main__")
        assert not any(m.split(".")[0] in {{"torch", "sklearn"}} for m in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.strip().splitlines()[1:]]
    paths = [row[0] for row in rows]
    expected = classifier.predict(paths)
    assert len(rows) == 9
    assert [row[1] for row in rows] == list(expected)


def test_onnx_model_transform_matches_the_extractor(tmp_path):
    X, _ = coloured(10, size=20)
    ext = PretrainedFeatureExtractor(tiny_cnn(), **KW).fit(X)
    model = OnnxModel(export_onnx(ext, tmp_path / "e.onnx"))
    np.testing.assert_allclose(model.transform(X), ext.transform(X), atol=1e-5)
    assert not hasattr(model, "predict_proba") and not hasattr(model, "predict")
    assert json.loads(json.dumps(model.metadata_))["task"] == "transform"
