"""ZeroShotClassifier and open_clip backbones, on a tiny CLIP trained on captioned shapes
(tools/train_tiny_clip.py; its weights ship in tests/data/tiny_clip)."""

from __future__ import annotations

import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from sktransfer import (
    PretrainedFeatureExtractor,
    WeightsUnavailableError,
    ZeroShotClassifier,
    export_model,
    import_model,
    load_backbone,
)
from sktransfer._captioned_shapes import held_out_combos, render
from sktransfer.cli import main

from ._helpers import TINY_CLIP, offline_env, run_in_fresh_process

open_clip = pytest.importorskip("open_clip")

SPEC = f"open_clip:local-dir:{TINY_CLIP}"
TEMPLATES = ["a {}.", "a photo of a {}."]
SEEN, UNSEEN = held_out_combos()
COMBOS = [f"{c} {s}" for c, s in SEEN + UNSEEN]


def _test_images(n: int = 300, seed: int = 1234):
    images, _, attributes = render(n, seed=seed)
    return images, attributes["combo"]


def _classifier(**params) -> ZeroShotClassifier:
    return ZeroShotClassifier(SPEC, templates=TEMPLATES, precision="float32", **params)


def test_zero_shot_names_classes_it_never_saw_combined():
    """Held-out images, colour-shape pairs never seen in training included: far above
    chance (1/20) from the class names alone."""
    images, combos = _test_images()
    clf = _classifier(classes=COMBOS).fit()
    predicted = clf.predict(images)
    unseen = np.isin(combos, [f"{c} {s}" for c, s in UNSEEN])
    assert (predicted == combos).mean() > 0.6
    assert (predicted[unseen] == combos[unseen]).mean() > 0.15  # chance: 0.05
    assert clf.classes_.tolist() == COMBOS


def test_text_weights_and_probabilities_equal_open_clips_own_computation():
    """What an open_clip user writes: its model, preprocess and tokenizer, the zero-shot
    weights of build_zero_shot_classifier, softmax of logit_scale * cosines."""
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{TINY_CLIP}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{TINY_CLIP}")
    weights = open_clip.build_zero_shot_classifier(model, tokenizer, COMBOS, TEMPLATES,
                                                   device="cpu")
    clf = _classifier(classes=COMBOS).fit()
    np.testing.assert_allclose(clf.class_embeddings_, weights.T.numpy(), atol=1e-5)
    images, _ = _test_images(16)
    batch = torch.stack([preprocess(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        features = model.encode_image(batch, normalize=True)
        expected = (model.logit_scale.exp() * features @ weights).softmax(dim=-1).numpy()
    np.testing.assert_allclose(clf.transform(images), features.numpy(), atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(images), expected, atol=1e-5)


def test_a_few_labelled_images_per_class_beat_zero_shot_and_a_linear_probe():
    """The text-anchored probe with 4 shots per class, against zero-shot and a plain
    linear probe on the same embeddings (a small version of benchmarks/bench_zero_shot.py)."""
    images, combos = _test_images(400)
    shots, _, shot_attributes = render(4 * len(COMBOS), seed=7,
                                       combos=[c for c in SEEN + UNSEEN for _ in range(4)])
    zero = _classifier(classes=COMBOS).fit().score(images, combos)
    few = _classifier(classes=COMBOS).fit(shots, shot_attributes["combo"])
    assert few.n_shots_ == len(shots) and few.coef_.shape == few.class_embeddings_.shape
    probe = make_pipeline(PretrainedFeatureExtractor(SPEC, precision="float32"),
                          LogisticRegression(max_iter=2000)).fit(shots, shot_attributes["combo"])
    assert few.score(images, combos) > zero
    assert few.score(images, combos) > probe.score(images, combos)
    held = _classifier(classes=COMBOS, text_anchor=1e6).fit(shots, shot_attributes["combo"])
    np.testing.assert_allclose(held.coef_, held.class_embeddings_, atol=1e-4)  # zero-shot


def test_classes_come_from_y_and_a_class_is_added_without_images():
    images, _ = _test_images(40)
    clf = _classifier().fit(None, ["red circle", "blue square"])  # names only: zero-shot
    assert clf.classes_.tolist() == ["blue square", "red circle"]
    assert clf.n_shots_ == 0 and np.array_equal(clf.coef_, clf.class_embeddings_)
    clf.set_params(classes=["blue square", "red circle", "green triangle"]).fit()
    assert clf.predict_proba(images).shape == (40, 3)
    assert set(clf.predict(images)) <= set(clf.classes_)


def test_descriptions_replace_the_class_name_in_the_prompts():
    plain = _classifier(classes=["x", "y"]).fit()
    described = _classifier(classes=["x", "y"],
                            class_descriptions={"x": ["red circle", "red square"]}).fit()
    reference = _classifier(classes=["red circle", "red square"]).fit()
    assert not np.allclose(plain.class_embeddings_[0], described.class_embeddings_[0])
    np.testing.assert_allclose(described.class_embeddings_[1], plain.class_embeddings_[1],
                               atol=1e-6)
    # "x" averages the prompts of both descriptions
    mean = reference.class_embeddings_.mean(axis=0)  # equal prompt counts: same average
    assert np.dot(described.class_embeddings_[0], mean / np.linalg.norm(mean)) > 0.99


@pytest.mark.parametrize("params, fit_args, message", [
    ({"classes": ["a"], "templates": ["no slot"]}, (), "template 'no slot' must be"),
    ({"classes": ["a"], "templates": ["{} and {}"]}, (), "must be a string with one"),
    ({"classes": ["a"], "templates": []}, (), "templates must be a non-empty list"),
    ({"classes": []}, (), "classes must be a non-empty list"),
    ({"classes": ["cat", "dog", "cat"]}, (), r"duplicates: \['cat'\]"),
    ({}, (), "no classes"),
    ({"classes": ["a"], "class_descriptions": {"b": "x"}}, (), r"not in classes: \['b'\]"),
    ({"classes": ["a", "b"]}, (np.zeros((2, 8, 8, 3), np.uint8), ["a", "c"]),
     r"labels that are not in classes: \['c'\]"),
    ({"model": "resnet18", "weights": None, "classes": ["a"]}, (), "has no text tower"),
])
def test_bad_inputs_get_clear_errors(params, fit_args, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier(**{"model": SPEC, "templates": TEMPLATES, **params}).fit(*fit_args)


def test_pipeline_search_and_cross_validation():
    images, combos = _test_images(60)
    search = GridSearchCV(_classifier(classes=COMBOS),
                          {"templates": [["a {}."], TEMPLATES]}, cv=2).fit(images, combos)
    assert search.best_score_ > 0.5
    scores = cross_val_score(_classifier(classes=COMBOS), images, combos, cv=2)
    assert scores.mean() > 0.5


def test_round_trips_offline_in_a_fresh_process(tmp_path):
    images, _ = _test_images(12)
    shots, _, attributes = render(20, seed=3)
    clf = _classifier(classes=COMBOS).fit(shots, attributes["combo"])
    expected = clf.predict_proba(images)
    joblib.dump(clf, tmp_path / "clf.joblib")
    export_model(clf, tmp_path / "clf.safetensors")
    env = offline_env(tmp_path)
    for name in ("clf.joblib", "clf.safetensors"):
        got = run_in_fresh_process(tmp_path / name, images, tmp_path, env)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    restored = import_model(tmp_path / "clf.safetensors")
    assert restored.classes_.tolist() == COMBOS
    assert restored.n_shots_ == clf.n_shots_ == 20
    np.testing.assert_array_equal(restored.coef_, clf.coef_)


def test_backbone_spec_embeds_in_the_joint_space_with_open_clips_preprocessing():
    backbone = load_backbone(SPEC)
    assert backbone.text is not None and backbone.preprocessing.crop_size == 32
    embeddings = PretrainedFeatureExtractor(SPEC).fit_transform(_test_images(8)[0])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)
    assert [name for name, _ in backbone.groups][:2] == ["stem", "block0"]


def test_offline_and_uncached_weights_fail_at_once_naming_the_way_out(tmp_path, monkeypatch,
                                                                        no_network):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    with pytest.raises(WeightsUnavailableError,
                       match=r"'ViT-B-32' \(laion2b_s34b_b79k\).*local-dir.*weights=None"):
        load_backbone("open_clip:ViT-B-32/laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="names no pretrained weights.*laion2b_s34b_b79k"):
        load_backbone("open_clip:ViT-B-32")
    with pytest.raises(ValueError, match="Unknown open_clip model 'ViT-B-33'.*ViT-B-32"):
        load_backbone("open_clip:ViT-B-33", None)


def test_a_missing_open_clip_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=r"sktransfer\[clip\]"):
        load_backbone(SPEC)


def test_command_line_zero_and_few_shot(tmp_path, capsys):
    from PIL import Image

    images, combos = _test_images(12)
    folder, shots = tmp_path / "images", tmp_path / "shots"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    few, _, attributes = render(10, seed=5, combos=[("red", "circle"), ("blue", "square")])
    for i, (image, combo) in enumerate(zip(few, attributes["combo"], strict=True)):
        (shots / combo).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(shots / combo / f"{i}.png")
    code = main(["zero-shot", str(folder), "--classes", ",".join(COMBOS), "--model", SPEC,
                 "--template", "a {}.", "-q"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].split(",")[:2] == ["path", "label"] and len(out) == 13
    assert sum(row.split(",")[1] == combo for row, combo in zip(out[1:], combos,
                                                                strict=True)) >= 6
    result = tmp_path / "few.csv"
    assert main(["zero-shot", str(folder), "--shots", str(shots), "--model", SPEC,
                 "--template", "a {}.", "-o", str(result), "-q"]) == 0
    header = result.read_text().splitlines()[0]
    assert header == "path,label,proba_blue square,proba_red circle"
    assert main(["zero-shot", str(folder), "--classes", "a", "--model", SPEC,
                 "--template", "no slot", "-q"]) == 2
    assert main(["zero-shot", str(folder), "--model", SPEC]) == 2  # no classes



def test_costs_count_the_prompts_and_the_cache_serves_the_images(tmp_path):
    images, combos = _test_images(10)
    clf = _classifier(classes=COMBOS, cache=tmp_path / "cache").fit()
    assert clf.fit_cost_.forward_flops > 0 and clf.fit_cost_.n_images == 0  # the prompts
    first = clf.predict_proba(images)
    assert clf.transform_cost_.n_images == 10
    again = clf.predict_proba(images)
    assert clf.transform_cost_.n_images == 0  # every embedding from the cache
    np.testing.assert_array_equal(first, again)
    shots = _classifier(classes=COMBOS).fit(images, combos)
    assert shots.fit_cost_.n_images == 10 and shots.fit_cost_.forward_flops > \
        clf.fit_cost_.forward_flops


def test_a_local_weights_file_is_loaded_for_folder_specs_too(tmp_path):
    """weights=<file> replaces the folder's weights (open_clip itself would ignore it)."""
    from safetensors.torch import save_file

    model = open_clip.create_model(f"local-dir:{TINY_CLIP}")
    state = {k: torch.zeros_like(v) if k.startswith("visual.proj") else v
             for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "zeroed.safetensors")
    images, _ = _test_images(4)
    own = PretrainedFeatureExtractor(SPEC).fit()
    zeroed = PretrainedFeatureExtractor(SPEC, weights=tmp_path / "zeroed.safetensors").fit()
    assert zeroed.backbone_.weights_id.endswith(
        f"zeroed.safetensors:{(tmp_path / 'zeroed.safetensors').stat().st_size}:"
        f"{(tmp_path / 'zeroed.safetensors').stat().st_mtime_ns}")
    assert not np.allclose(own.transform(images), zeroed.transform(images))
    random = load_backbone(SPEC, None)
    assert random.weights_id is None and random.text is not None


def test_fitted_models_keep_no_text_tower_and_binary_scores_are_one_column():
    images, _ = _test_images(6)
    extractor = PretrainedFeatureExtractor(SPEC).fit()
    assert extractor.backbone_.text is None
    clf = _classifier(classes=["red circle", "blue square"]).fit()
    assert clf.backbone_.text is None and not hasattr(clf, "_text")
    scores = clf.decision_function(images)
    proba = clf.predict_proba(images)
    assert scores.shape == (6,)
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), proba[:, 1], atol=1e-5)


def test_integer_labels_and_their_descriptions_survive_the_safetensors_exchange(tmp_path):
    images, _ = _test_images(5)
    clf = _classifier(classes=[np.int64(3), np.int64(7)],
                      class_descriptions={np.int64(3): "red circle", 7: ["blue square"]}).fit()
    export_model(clf, tmp_path / "ints.safetensors")
    back = import_model(tmp_path / "ints.safetensors")
    assert back.classes_.tolist() == [3, 7] and back.get_params()["class_descriptions"] == {
        3: "red circle", 7: ["blue square"]}
    np.testing.assert_array_equal(back.predict(images), clf.predict(images))
    back.fit()  # refits from the imported parameters
    with pytest.raises(ValueError, match="mixes strings and other labels"):
        _classifier(classes=[1, "a"]).fit()
    with pytest.raises(ValueError, match="X has 3 images but y has 0 labels"):
        _classifier(classes=["a"]).fit(images[:3], [])
