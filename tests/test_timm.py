"""timm backbones ("timm:<name>"): offline, random init or local weights files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor, load_backbone
from sktransfer.errors import WeightsUnavailableError

timm = pytest.importorskip("timm")  # in the dev extra, so make test runs this file

RNG = np.random.default_rng(0)
# (name, crop size used in the test: CNNs accept any size, the ViT wants its own)
FAMILIES = [("resnet18", 64), ("convnext_atto", 64), ("efficientnet_b0", 64),
            ("vit_tiny_patch16_224", 224)]


def reference(name: str, state: dict) -> torch.nn.Module:
    net = timm.create_model(name, pretrained=False, num_classes=0).eval()
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize("name, size", FAMILIES)
def test_embeddings_are_timms_pooled_pre_logits_and_preprocessing_its_data_config(name, size):
    X = RNG.integers(0, 256, size=(3, size + 8, size + 8, 3), dtype=np.uint8)
    ext = PretrainedFeatureExtractor(f"timm:{name}", weights=None, image_size=size,
                                     precision="float32").fit()
    ref = reference(name, ext.backbone_.body.net.state_dict())
    prep = ext.backbone_.preprocessing
    batch = prep.normalize(torch.stack([prep.prepare(torch.from_numpy(x).permute(2, 0, 1))
                                        for x in X]))
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(batch), pre_logits=True)
    np.testing.assert_allclose(ext.transform(X), expected.numpy(), atol=1e-5, rtol=0)
    # without overrides, the preprocessing is timm's data config for the model
    config = timm.data.resolve_model_data_config(ref)
    own = load_backbone(f"timm:{name}", None).preprocessing
    assert own.crop_size == config["input_size"][-1]
    assert own.resize_size == int(config["input_size"][-1] / config["crop_pct"])
    assert (own.mean, own.std) == (tuple(config["mean"]), tuple(config["std"]))
    assert own.interpolation.value == config["interpolation"]


def test_vit_groups_are_stem_blocks_and_final_norm():
    backbone = load_backbone("timm:vit_tiny_patch16_224", None)
    names = [g for g, _ in backbone.groups]
    assert names[0] == "stem" and backbone.groups[0][1] == ["cls_token", "pos_embed",
                                                            "patch_embed"]
    assert names[1:12] == [f"blocks.{i}" for i in range(11)]
    assert names[12] == "blocks.11+norm" and len(names) == 13


def test_local_weights_file_safetensors_and_mismatch_named(tmp_path):
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)  # with its classifier
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    backbone = load_backbone("timm:resnet18", path, image_size=32)
    assert torch.equal(backbone.body.net.conv1.weight, source.conv1.weight)
    assert backbone.weights_id.startswith("file:")
    with pytest.raises(ValueError, match=r"tensor 'layer1.0.conv1.weight' has shape"):
        load_backbone("timm:resnet50", path)
    with pytest.raises(ValueError, match=r"96 missing tensors.*first: 'layer1.2.conv1.weight'"):
        load_backbone("timm:resnet34", path)


def test_errors_unknown_name_missing_timm_and_offline(tmp_path, monkeypatch, no_network):
    with pytest.raises(ValueError, match=r"Unknown timm model 'resnet19'.*'timm:resnet18'"):
        load_backbone("timm:resnet19", None)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(WeightsUnavailableError, match="resnet18.a1_in1k.*weights=None"):
        load_backbone("timm:resnet18.a1_in1k")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"sktransfer\[timm\]"):
        load_backbone("timm:resnet18", None)


def test_fine_tuning_unfreeze_2_trains_exactly_the_top_two_timm_groups(tmp_path):
    X = RNG.integers(0, 256, size=(12, 40, 40, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 4)
    start = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    torch.save(start.state_dict(), tmp_path / "atto.pth")
    before = {f"net.{k}": v for k, v in start.state_dict().items()}
    clf = FineTuneClassifier("timm:convnext_atto", weights=tmp_path / "atto.pth", unfreeze=2,
                             max_epochs=2, freeze_epochs=1, image_size=32, lr=0.1,
                             lr_decay=0.5, schedule="constant", random_state=0)
    clf.fit(X, y)
    rows = clf.summary()
    assert [r["group"] for r in rows] == ["stem", "stages.0", "stages.1", "stages.2",
                                          "stages.3", "pre_logits", "head"]
    assert [r["group"] for r in rows if r["trainable"]] == ["stages.3", "pre_logits", "head"]
    assert [r["lr"] for r in rows[-3:]] == [pytest.approx(0.025), pytest.approx(0.05), 0.1]
    lr_of = {id(p): g["lr"] for g in clf.net_.optimizer_.param_groups for p in g["params"]}
    module = clf.net_.module_
    for name, p in module.named_parameters():
        if name.startswith("body.net.stages.0."):
            assert not p.requires_grad
    after = module.body.state_dict()
    frozen = [k for k in after if k.startswith(("net.stem.", "net.stages.0", "net.stages.2"))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert not torch.equal(after["net.stages.3.blocks.0.conv_dw.weight"],
                           before["net.stages.3.blocks.0.conv_dw.weight"])  # trained
    top = module.body.net.stages[3].blocks[0].conv_dw.weight
    assert lr_of[id(top)] == pytest.approx(0.025)


@pytest.mark.parametrize("name, size", [("convnext_atto", 32), ("vit_tiny_patch16_224", 64)])
def test_joblib_and_safetensors_round_trips_offline_in_a_fresh_process(tmp_path, name, size):
    import joblib

    from sktransfer import export_model

    from ._helpers import offline_env, run_in_fresh_process

    X = RNG.integers(0, 256, size=(4, size, size, 3), dtype=np.uint8)
    y = np.array(["a", "b"] * 2)
    clf = FineTuneClassifier(f"timm:{name}", weights=None, unfreeze=1, max_epochs=2,
                             image_size=size, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    env = offline_env(tmp_path)
    env["HF_HOME"] = str(tmp_path / "empty-hf-cache")
    joblib.dump(clf, tmp_path / "m.joblib")
    np.testing.assert_array_equal(run_in_fresh_process(tmp_path / "m.joblib", X, tmp_path, env),
                                  expected)
    ext = PretrainedFeatureExtractor(f"timm:{name}", weights=None, image_size=size).fit()
    export_model(ext, tmp_path / "e.safetensors")
    code = ("import sys, numpy as np, socket\n"
            "socket.create_connection = socket.socket.connect = None\n"
            "from sktransfer import import_model\n"
            "m = import_model(sys.argv[1])\n"
            "np.save(sys.argv[3], m.transform(np.load(sys.argv[2])))")
    import subprocess

    np.save(tmp_path / "X.npy", X)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "e.safetensors"),
                             str(tmp_path / "X.npy"), str(tmp_path / "out.npy")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ext.transform(X))


def test_torchvision_prefix_is_the_same_as_a_bare_name():
    bare = load_backbone("resnet18", None, image_size=32)
    prefixed = load_backbone("torchvision:resnet18", None, image_size=32)
    assert bare.groups == prefixed.groups and bare.preprocessing == prefixed.preprocessing


def test_layer_taps_use_timm_module_names_and_pool_vit_tokens():
    X = RNG.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    ext = PretrainedFeatureExtractor("timm:vit_tiny_patch16_224", weights=None,
                                     layer=["blocks.5", "blocks.11"]).fit()
    assert ext.transform(X).shape == (2, 2 * 192)  # each block's tokens, averaged
    cnn = PretrainedFeatureExtractor("timm:convnext_atto", weights=None, image_size=64,
                                     layer="stages.1").fit()
    assert cnn.transform(X).shape == (2, 80)


def test_grid_search_over_unfreeze_with_a_timm_model():
    from sklearn.model_selection import GridSearchCV

    X = RNG.integers(0, 256, size=(12, 36, 36, 3), dtype=np.uint8)
    y = np.array(["a", "b"] * 6)
    search = GridSearchCV(FineTuneClassifier("timm:resnet18", weights=None, max_epochs=2,
                                             image_size=32, random_state=0),
                          {"unfreeze": [0, 2]}, cv=2).fit(X, y)
    assert [p["unfreeze"] for p in search.cv_results_["params"]] == [0, 2]
    assert search.best_estimator_.predict(X).shape == (12,)


def test_fixed_size_vit_is_built_for_image_size():
    X = RNG.integers(0, 256, size=(2, 100, 100, 3), dtype=np.uint8)
    ext = PretrainedFeatureExtractor("timm:vit_tiny_patch16_224", weights=None,
                                     image_size=96).fit()
    assert ext.backbone_.body.net.patch_embed.img_size == (96, 96)
    assert ext.transform(X).shape == (2, 192)


def test_fine_tuning_a_vit_trains_its_top_two_blocks_at_their_rates():
    X = RNG.integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    y = np.array(["a", "b"] * 3)
    clf = FineTuneClassifier("timm:vit_tiny_patch16_224", weights=None, unfreeze=2,
                             max_epochs=2, freeze_epochs=1, image_size=64, lr=0.1,
                             lr_decay=0.5, schedule="constant", random_state=0).fit(X, y)
    rows = clf.summary()
    assert len(rows) == 14  # stem, 12 blocks (the last with the final norm), head
    assert [(r["group"], r["lr"]) for r in rows if r["trainable"]] == [
        ("blocks.10", pytest.approx(0.025)), ("blocks.11+norm", pytest.approx(0.05)),
        ("head", 0.1)]
    lr_of = {id(p): g["lr"] for g in clf.net_.optimizer_.param_groups for p in g["params"]}
    net = clf.net_.module_.body.net
    assert lr_of[id(net.norm.weight)] == pytest.approx(0.05)
    assert not net.blocks[9].attn.qkv.weight.requires_grad and not net.cls_token.requires_grad
