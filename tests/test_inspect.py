"""sktransfer.inspect: loss tables, confusions, label issues, Grad-CAM maps and the figure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from sktransfer import (
    DomainAdaptationClassifier,
    FineTuneClassifier,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
)
from sktransfer._gradcam import explainer, find_layer, to_original
from sktransfer._label_issues import confident_learning, issue_table
from sktransfer.datasets import held_out_combos, load_captioned_shapes
from sktransfer.images import Preprocessing
from sktransfer.inspect import explain, label_issues, most_confused, plot_top_losses, top_losses

from ._helpers import TINY_CLIP, tiny_cnn

SIZE, SQUARE = 32, 8


def squares(n: int, seed: int, shape: tuple[int, int] = (SIZE, SIZE), margin: int = 0):
    """Grey noise with one 8-pixel square, red or blue (the class), placed at random at
    least ``margin`` pixels from the left and right edges; also the squares' corners."""
    rng = np.random.default_rng(seed)
    height, width = shape
    X = rng.integers(60, 120, size=(n, height, width, 3), dtype=np.uint8)
    y = np.resize(["red", "blue"], n)
    corners = []
    for i in range(n):
        r = rng.integers(0, height - SQUARE)
        c = rng.integers(margin, width - margin - SQUARE)
        X[i, r:r + SQUARE, c:c + SQUARE] = (230, 30, 30) if y[i] == "red" else (30, 30, 230)
        corners.append((r, c))
    return X, y, corners


def in_square(heat: np.ndarray, corner: tuple[int, int]) -> bool:
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    return corner[0] <= row < corner[0] + SQUARE and corner[1] <= col < corner[1] + SQUARE


def square_classifier(model: nn.Module | None = None, **params) -> FineTuneClassifier:
    settings = dict(image_size=SIZE, resize_size=SIZE, unfreeze="all", freeze_epochs=0,
                    max_epochs=8, lr=1e-2, batch_size=16, random_state=0,
                    precision="float32")  # the same numbers on CPUs with and without bf16
    return FineTuneClassifier(model if model is not None else tiny_cnn(2),
                              **{**settings, **params})


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN that tells red squares from blue ones (accuracy 1 on fresh images)."""
    X, y, _ = squares(64, seed=0)
    return square_classifier().fit(X, y)


def flat_pipeline(**params):
    """Logistic regression on the flattened pixels of images (fast, no network)."""
    flatten = FunctionTransformer(lambda X: np.asarray(X, dtype=np.float64).reshape(len(X), -1)
                                  / 255.0)
    return make_pipeline(flatten, LogisticRegression(max_iter=1000, **params))


def digits(n: int = 600, noise: float = 0.1, seed: int = 0):
    """The first ``n`` digits as 8x8 uint8 images, ``noise`` of the labels flipped."""
    data = load_digits()
    X = (data.images[:n] * 16).clip(0, 255).astype(np.uint8)
    y = data.target[:n].copy()
    rng = np.random.default_rng(seed)
    flipped = rng.choice(n, int(noise * n), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    return X, y, flipped


# --------------------------------------------------------------------------- top losses
def test_top_losses_lists_the_highest_losses_first():
    X, y, flipped = digits()
    pipe = flat_pipeline().fit(X, y)
    table = top_losses(pipe, X, y, k=7)
    assert list(table.columns) == ["index", "true", "predicted", "probability", "loss"]
    assert len(table) == 7
    proba = pipe.predict_proba(X)
    loss = -np.log(proba[np.arange(len(y)), y])
    worst = np.sort(loss)[::-1][:7]
    np.testing.assert_allclose(table["loss"], worst)
    assert table["loss"].is_monotonic_decreasing
    rows = table["index"].to_numpy()
    np.testing.assert_allclose(table["loss"], loss[rows])
    np.testing.assert_array_equal(table["true"], y[rows])
    np.testing.assert_array_equal(table["predicted"], pipe.classes_[proba[rows].argmax(1)])
    np.testing.assert_allclose(table["probability"], proba[rows].max(1))
    assert np.isin(rows, flipped).mean() > 0.5  # the worst are mostly the flipped ones
    assert len(top_losses(pipe, X, y, k=None)) == len(X)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_losses(pipe, X, y, k=0)
    with pytest.raises(ValueError, match=r"not fitted on: \[42\]"):
        top_losses(pipe, X, np.r_[y[:-1], 42])


@pytest.fixture(scope="module")
def png_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("squares")
    X, y, _ = squares(12, seed=3)
    paths = []
    for i, image in enumerate(X):
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths, X, y


def test_top_losses_has_a_path_column_only_for_paths(png_files):
    paths, X, y = png_files
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(2), image_size=SIZE,
                                                    resize_size=SIZE, precision="float32"),
                         LogisticRegression(max_iter=200)).fit(X, y)
    forms = {"str": [str(p) for p in paths], "Path": paths, "Series": pd.Series(
        [str(p) for p in paths], index=range(100, 112)),
             "DataFrame": pd.DataFrame({"file": [str(p) for p in paths]})}
    for name, form in forms.items():
        table = top_losses(pipe, form, y, k=4)
        assert list(table.columns) == ["index", "path", "true", "predicted", "probability",
                                       "loss"], name
        assert table["path"].tolist() == [str(paths[i]) for i in table["index"]], name
    assert "path" not in top_losses(pipe, X, y, k=4).columns  # an array of pixels
    assert "path" not in top_losses(pipe, list(X), y, k=4).columns  # a list of arrays


def test_most_confused_counts_the_off_diagonal_pairs():
    y = np.array(["cat"] * 5 + ["dog"] * 4 + ["emu"] * 3)
    predicted = np.array(["cat", "cat", "dog", "dog", "emu",  # cat: 2 -> dog, 1 -> emu
                          "cat", "cat", "cat", "dog",  # dog: 3 -> cat
                          "emu", "emu", "emu"])
    X = np.arange(len(y))[:, None]
    model = KNeighborsClassifier(n_neighbors=1).fit(X, predicted)  # predicts `predicted`
    table = most_confused(model, X, y)
    assert list(table.columns) == ["true", "predicted", "count"]
    assert table.values.tolist() == [["dog", "cat", 3], ["cat", "dog", 2], ["cat", "emu", 1]]
    assert most_confused(model, X, y, min_count=2)["count"].tolist() == [3, 2]
    assert most_confused(model, X, predicted).empty
    with pytest.raises(ValueError, match="min_count"):
        most_confused(model, X, y, min_count=0)


# --------------------------------------------------------------------------- label issues
def test_confident_learning_on_hand_made_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    proba = np.array([
        [0.9, 0.1, 0.0],  # sure of its label
        [0.7, 0.3, 0.0],  # unsure (0.7 < class 0's threshold 0.6? no: 0.7 >= 0.6): fine
        [0.2, 0.8, 0.0],  # labelled 0, confidently 1: an issue
        [0.1, 0.9, 0.0],
        [0.3, 0.6, 0.1],
        [0.1, 0.3, 0.6],  # labelled 1, confidently 2 (threshold 0.5): an issue
        [0.1, 0.4, 0.5],  # class 2's only image; 0.4 is under class 1's threshold 0.6
    ])
    # thresholds: class 0 mean(0.9, 0.7, 0.2) = 0.6, class 1 mean(.9, .6, .3) = 0.6, 2: 0.5
    issue, suggested = confident_learning(labels, proba)
    assert np.flatnonzero(issue).tolist() == [2, 5]
    assert suggested.tolist() == [0, 0, 1, 1, 1, 2, 2]
    # confident of another class but predicted as labelled: not flagged (cleanlab's rule)
    issue, _ = confident_learning(np.array([0, 0, 1]), np.array([[0.55, 0.45], [0.95, 0.05],
                                                                [0.5, 0.5]]))
    assert not issue.any()


def test_label_issues_finds_planted_flips():
    X, y, flipped = digits()
    pipe = flat_pipeline()
    issues, confidence = label_issues(pipe, X, y, cv=5, return_scores=True)
    assert issues.dtype.kind == "i" and len(set(issues)) == len(issues)
    assert np.isin(issues, flipped).mean() >= 0.8  # precision of the flagged set
    assert np.isin(flipped, issues).mean() >= 0.6  # recall
    np.testing.assert_array_equal(confidence[issues], np.sort(confidence[issues]))
    top = np.argsort(confidence, kind="stable")[:len(flipped)]
    assert np.isin(top, flipped).mean() >= 0.8
    assert not hasattr(pipe, "classes_")  # the estimator passed is left unfitted
    assert np.array_equal(label_issues(pipe, X, y, cv=5), issues)


def test_label_issues_of_a_fitted_model_on_held_out_images():
    X, _, _ = digits(900)
    X_new, y_new, flipped = digits(900, seed=1)
    X_new, y_new = X_new[600:], y_new[600:]
    flipped = flipped[flipped >= 600] - 600
    pipe = flat_pipeline().fit(X[:600], load_digits().target[:600])
    issues = label_issues(pipe, X_new, y_new, cv="prefit")
    assert np.isin(issues, flipped).mean() >= 0.8 and np.isin(flipped, issues).mean() >= 0.6
    assert np.array_equal(label_issues(FrozenEstimator(pipe), X_new, y_new), issues)
    with pytest.raises(ValueError, match="not fitted on"):
        label_issues(pipe, X_new, np.r_[y_new[:-1], 11], cv="prefit")
    with pytest.raises(ValueError, match="cv must be 'prefit'"):
        label_issues(pipe, X_new, y_new, cv="fitted")
    with pytest.raises(NotFittedError):
        label_issues(flat_pipeline(), X_new, y_new, cv="prefit")
    with pytest.raises(TypeError, match="KMeans has none"):
        from sklearn.cluster import KMeans
        label_issues(KMeans(2), X_new.reshape(len(X_new), -1), y_new)


def test_label_issues_with_a_fine_tuner_and_its_table(tmp_path):
    X, y, _ = squares(48, seed=4)
    flipped = np.array([3, 10, 17, 30])
    noisy = y.copy()
    noisy[flipped] = np.where(y[flipped] == "red", "blue", "red")
    fine_tuner = square_classifier(max_epochs=15, batch_size=8, lr=3e-2)
    issues, confidence = label_issues(fine_tuner, X, noisy, cv=2, return_scores=True)
    assert set(np.argsort(confidence)[:4]) == set(flipped)
    assert set(issues) <= set(flipped) and len(issues) >= 3

    paths = []  # the same pixels in files: the command line's table
    for i, image in enumerate(X):
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(image).save(paths[-1])
    table = issue_table(fine_tuner, paths, noisy, cv=2)
    assert list(table.columns) == ["index", "path", "given", "suggested", "self_confidence"]
    assert table["index"].tolist() == issues.tolist()
    assert table["path"].tolist() == [str(paths[i]) for i in issues]
    assert table["given"].tolist() == noisy[issues].tolist()
    assert table["suggested"].tolist() == y[issues].tolist()  # the true labels
    np.testing.assert_allclose(table["self_confidence"], confidence[issues], rtol=1e-6)
    everything = issue_table(fine_tuner, X, noisy, cv=2, all_rows=True)
    assert "path" not in everything.columns and len(everything) == len(X)
    assert everything["issue"].tolist() == [True] * len(issues) + [False] * (48 - len(issues))
    assert everything["self_confidence"][len(issues):].is_monotonic_increasing


# --------------------------------------------------------------------------- Grad-CAM
def test_maps_have_each_image_shape_and_peak_on_the_square(trained):
    X, y, corners = squares(32, seed=1, shape=(40, 48), margin=6)  # the crop cuts the sides
    X = list(X[:16]) + [np.ascontiguousarray(x.transpose(1, 0, 2)) for x in X[16:]]
    corners = corners[:16] + [(c, r) for r, c in corners[16:]]
    assert trained.score(X, y) == 1.0
    maps = explain(trained, X)
    assert isinstance(maps, list) and len(maps) == len(X)
    assert [m.shape for m in maps] == [x.shape[:2] for x in X]
    assert all(m.dtype == np.float32 and m.min() >= 0 and m.max() == 1 for m in maps)
    assert sum(in_square(m, c) for m, c in zip(maps, corners, strict=True)) >= 24  # 26 here
    # 40 x 48 -> resized 32 x 38, crop of 32 from column 3: outside it, nothing
    assert all(not m[:, :3].any() and not m[:, -3:].any() for m in maps[:16])
    assert all(not m[:3].any() and not m[-3:].any() for m in maps[16:])
    other = np.where(y == "red", "blue", "red")
    against = explain(trained, X[:8], target=other[:8])
    assert sum(in_square(m, c) for m, c in zip(against, corners, strict=False)) < 4
    same = explain(trained, X[:4], target="red")
    np.testing.assert_allclose(same[0], maps[0], atol=1e-6)  # image 0 is red: its class


def test_maps_follow_the_resize_and_crop_back_to_the_original_pixels(trained):
    """The map of an image, resized and cropped as the network saw it, is the map of the
    crop itself (the network's input is the same: only the mapping back differs)."""
    X, _, _ = squares(6, seed=12, shape=(40, 56), margin=8)
    X = list(X[:3]) + [np.ascontiguousarray(x.transpose(1, 0, 2)) for x in X[3:]]
    X.append(squares(1, seed=13, shape=(20, 24))[0][0])  # smaller than the crop: padded
    prep = trained.preprocessing_
    crops = [prep.resize_crop(torch.as_tensor(x).permute(2, 0, 1)).permute(1, 2, 0).numpy()
             for x in X]
    for original, crop in zip(explain(trained, X), explain(trained, crops), strict=True):
        seen = prep.resize_crop(torch.as_tensor(original)[None])[0].numpy()
        assert np.corrcoef(seen.ravel(), crop.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("resize, crop, shape", [(32, 32, (40, 56)), (36, 32, (56, 40)),
                                                 (24, 32, (30, 20)), (20, 32, (20, 64)),
                                                 (32, 32, (32, 32))])
def test_maps_go_back_through_any_resize_and_crop(resize, crop, shape):
    """A blob on the crop, mapped back to the original pixels, lands where the resize and
    crop take it again, whether the crop cuts the image or pads it (resize < crop)."""
    prep = Preprocessing(resize, crop)
    valid = prep.resize_crop(torch.ones(1, *shape))[0] > 0.5  # the crop's image pixels
    rows, cols = np.nonzero(valid.numpy())
    rng = np.random.default_rng(resize + shape[0])
    for _ in range(3):
        at = rng.integers(len(rows))
        grid = np.mgrid[:crop, :crop]
        blob = np.exp(-((grid[0] - rows[at]) ** 2 + (grid[1] - cols[at]) ** 2) / 32.0)
        original = to_original(torch.as_tensor(blob), prep, shape)
        assert original.shape == shape and original.max() == pytest.approx(1.0)
        seen = prep.resize_crop(torch.as_tensor(original)[None])[0].numpy()
        assert np.corrcoef(seen[valid], blob[valid])[0, 1] > 0.98


def test_explain_leaves_the_estimator_as_it_was(trained):
    X, _, _ = squares(8, seed=2)
    module = trained.net_.module_
    before = {k: v.clone() for k, v in module.state_dict().items()}
    grads = [p.requires_grad for p in module.parameters()]
    modes = [m.training for m in module.modules()]
    devices = {p.device for p in module.parameters()}
    proba = trained.predict_proba(X)
    with torch.no_grad():  # a caller's no_grad does not stop it
        explain(trained, X)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert [p.requires_grad for p in module.parameters()] == grads
    assert [m.training for m in module.modules()] == modes
    assert {p.device for p in module.parameters()} == devices
    assert all(p.grad is None for p in module.parameters())
    np.testing.assert_array_equal(trained.predict_proba(X), proba)


def test_explain_runs_where_predict_runs(trained):
    """A model fitted on a GPU and loaded on a machine without one predicts on the CPU
    (skorch maps its net there) with ``device="cuda"`` still set: explain follows."""
    import copy

    X, _, _ = squares(4, seed=3)
    loaded = copy.deepcopy(trained)
    elsewhere = "cpu" if torch.cuda.is_available() else "cuda"  # not where the net is
    loaded.set_params(device=elsewhere)
    for a, b in zip(explain(loaded, X), explain(trained, X), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_explain_a_pipeline_folds_the_scaler_into_the_linear_map():
    X, y, corners = squares(48, seed=5)
    extractor = PretrainedFeatureExtractor(tiny_cnn(2), image_size=SIZE, resize_size=SIZE,
                                           precision="float32")
    batch = torch.as_tensor(X[:6]).permute(0, 3, 1, 2).float() / 255
    three = np.where(np.arange(48) % 3 == 0, "green", y)
    for labels, steps in [(y, [StandardScaler()]), (three, [StandardScaler(), "passthrough"]),
                          (y, [])]:
        pipe = make_pipeline(extractor, *steps, LogisticRegression(max_iter=500))
        pipe.fit(X, labels)
        with torch.no_grad():
            scores = explainer(pipe).network(batch).numpy()
        decision = pipe.decision_function(X[:6])
        if decision.ndim == 1:  # binary: the scores of class 0 and 1 are -d and d
            decision = np.stack([-decision, decision], axis=1)
        np.testing.assert_allclose(scores, decision, rtol=1e-4, atol=1e-4)
    pipe = make_pipeline(extractor, StandardScaler(), LogisticRegression(max_iter=500))
    maps = explain(pipe.fit(X, y), X)
    assert sum(in_square(m, c) for m, c in zip(maps, corners, strict=True)) >= 40


def test_explain_a_vision_transformer_on_its_token_grid():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=2)
    X, y, _ = squares(16, seed=6)
    clf = square_classifier(vit, max_epochs=1).fit(X, y)
    network = explainer(clf).network
    layer = find_layer(network, torch.rand(1, 3, SIZE, SIZE))
    # the last block's input norm: the class token's last attention reads the patches there
    assert layer.name.endswith("encoder_layer_1.ln_1") and layer.prefix == 1
    maps = explain(clf, X[:3])
    assert [m.shape for m in maps] == [(SIZE, SIZE)] * 3
    assert all(m.max() in (0, 1) for m in maps) and any(m.max() == 1 for m in maps)


def test_explain_a_zero_shot_clip_on_the_logits_of_its_vision_transformer():
    pytest.importorskip("open_clip")
    seen, _ = held_out_combos()
    clf = ZeroShotClassifier(f"open_clip:local-dir:{TINY_CLIP}", templates=["a {}."],
                             classes=[f"{c} {s}" for c, s in seen], precision="float32")
    images, _, _ = load_captioned_shapes(6, seed=5, combos=seen)
    clf.fit()
    network = explainer(clf).network
    with torch.no_grad():  # the scores explained are the logits of predict_proba
        logits = network(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(logits.softmax(1).numpy(), clf.predict_proba(images),
                               atol=1e-5)
    layer = find_layer(network, torch.rand(1, 3, SIZE, SIZE))
    assert layer.name.endswith("transformer.resblocks.1.ln_1") and layer.prefix == 1
    maps = explain(clf, images, target=clf.classes_[0])
    assert [m.shape for m in maps] == [(SIZE, SIZE)] * 6


def test_explain_a_domain_adaptation_classifier():
    X, y, corners = squares(32, seed=7)
    X_target = 255 - squares(16, seed=8)[0]
    clf = DomainAdaptationClassifier(tiny_cnn(2), image_size=SIZE, resize_size=SIZE,
                                     max_epochs=8, lr=1e-2, batch_size=16, adabn=False,
                                     random_state=0, guard=False, method="coral")
    clf.fit(X, y, X_target=X_target)
    proba = clf.predict_proba(X[:4])
    modes = [m.training for m in clf.net_.module_.modules()]
    maps = explain(clf, X[:4])
    assert [m.shape for m in maps] == [(SIZE, SIZE)] * 4
    assert sum(in_square(m, c) for m, c in zip(maps, corners, strict=False)) >= 3
    assert [m.training for m in clf.net_.module_.modules()] == modes
    np.testing.assert_array_equal(clf.predict_proba(X[:4]), proba)


def test_explain_refuses_what_it_cannot_explain(trained):
    X, y, _ = squares(12, seed=9)
    extractor = PretrainedFeatureExtractor(tiny_cnn(2), image_size=SIZE, resize_size=SIZE)
    refused = {
        "LogisticRegression": flat_pipeline().fit(X, y)[-1],
        "first step is a FunctionTransformer": flat_pipeline().fit(X, y),
        "last step 'kneighborsclassifier' is a KNeighborsClassifier": make_pipeline(
            extractor, KNeighborsClassifier(3)).fit(X, y),
        "step 'pca' is a PCA": make_pipeline(extractor, PCA(4),
                                             LogisticRegression()).fit(X, y),
        "got PretrainedFeatureExtractor": extractor.fit(X),
    }
    for message, estimator in refused.items():
        with pytest.raises(TypeError, match=message):
            explain(estimator, X)
    with pytest.raises(NotFittedError):
        explain(square_classifier(), X)
    with pytest.raises(ValueError, match=r"does not know: \['green'\]"):
        explain(trained, X, target="green")
    with pytest.raises(ValueError, match="one label per image"):
        explain(trained, X, target=["red", "blue"])
    with pytest.raises(ValueError, match="no convolutional feature map"):
        find_layer(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), torch.rand(1, 3, 4, 4))


# --------------------------------------------------------------------------- the figure
def test_plot_top_losses_draws_k_panels_and_writes_a_png(trained, tmp_path):
    pytest.importorskip("matplotlib")
    X, y, _ = squares(16, seed=10)
    y[:3] = np.where(y[:3] == "red", "blue", "red")  # three sure mistakes
    path = tmp_path / "worst.png"
    figure = plot_top_losses(trained, X, y, k=5, path=path)
    assert len(figure.axes) == 5
    assert all(len(ax.images) == 2 for ax in figure.axes)  # image and heat map
    table = top_losses(trained, X, y, k=5)
    first = table.iloc[0]
    assert figure.axes[0].get_title() == (f"{first['predicted']} / {first['true']} / "
                                          f"{first['loss']:.2f} / {first['probability']:.2f}")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100
    plain = plot_top_losses(flat_pipeline().fit(X, y), X, y, k=3)  # not explainable
    assert len(plain.axes) == 3 and all(len(ax.images) == 1 for ax in plain.axes)
    assert all(len(ax.images) == 1 for ax in plot_top_losses(trained, X, y, k=2,
                                                             heatmaps=False).axes)


def test_missing_optional_packages_say_how_to_install(trained, monkeypatch):
    X, y, _ = squares(4, seed=11)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[plot\]'"):
        plot_top_losses(trained, X, y)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="top_losses .*needs pandas"):
        top_losses(trained, X, y)


def test_public_names():
    import sktransfer.inspect as inspect_module

    assert sorted(inspect_module.__all__) == ["explain", "label_issues", "most_confused",
                                              "plot_top_losses", "top_losses"]
    assert Path(inspect_module.__file__).name == "inspect.py"
