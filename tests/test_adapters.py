"""Low-rank adapters (adapter="lora") on the fine-tuning estimators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktransfer import FineTuneClassifier, FineTuneRegressor, export_model, import_model
from sktransfer._lora import has_adapters

from ._helpers import X_TOY, Y_TOY, pointwise_cnn

KW = dict(image_size=16, resize_size=16, random_state=0, lr=1e-2, batch_size=8,
          unfreeze="all", freeze_epochs=0, precision="float32")


def test_only_the_adapters_and_the_head_train_and_counts_are_exact():
    base = pointwise_cnn()
    clf = FineTuneClassifier(base, adapter="lora", adapter_rank=2, adapter_merge=False,
                             max_epochs=3, **KW).fit(X_TOY, Y_TOY)
    rows = {row["group"]: row for row in clf.summary()}
    trained = sum(r["params"] for r in rows.values() if r["trainable"])
    # rank 2 on the two 1x1 convs (8->16, 16->32) and the head (32*3 + 3)
    assert trained == 2 * (8 + 16) + 2 * (16 + 32) + 32 * 3 + 3
    assert rows["base (frozen)"]["trainable"] is False
    # the pretrained weights the adapters wrap are those of the module passed, untouched
    fitted = dict(clf.net_.module_.named_parameters())
    for name, value in base.state_dict().items():
        if name.startswith("3.") or name.startswith("9."):  # the adapted convs' weights
            key = f"body.net.{name.split('.')[0]}.parametrizations.weight.original" \
                if name.endswith("weight") else f"body.net.{name}"
            torch.testing.assert_close(fitted[key].detach(), value)


def test_identical_to_the_base_before_training_and_merged_equals_separate():
    untrained = FineTuneClassifier(pointwise_cnn(), adapter="lora", max_epochs=1,
                                   **{**KW, "lr": 1e-30}).fit(X_TOY, Y_TOY)
    plain = FineTuneClassifier(pointwise_cnn(), max_epochs=1, **{**KW, "lr": 1e-30},
                               ).fit(X_TOY, Y_TOY)
    np.testing.assert_allclose(untrained.predict_proba(X_TOY), plain.predict_proba(X_TOY),
                               atol=1e-6)
    merged = FineTuneClassifier(pointwise_cnn(), adapter="lora", max_epochs=3,
                                **KW).fit(X_TOY, Y_TOY)
    separate = FineTuneClassifier(pointwise_cnn(), adapter="lora", adapter_merge=False,
                                  max_epochs=3, **KW).fit(X_TOY, Y_TOY)
    assert not has_adapters(merged.net_.module_) and has_adapters(separate.net_.module_)
    np.testing.assert_allclose(merged.predict_proba(X_TOY), separate.predict_proba(X_TOY),
                               atol=1e-5)
    assert not np.allclose(merged.predict_proba(X_TOY), plain.predict_proba(X_TOY),
                           atol=1e-3)  # the adapters trained
    # a merged network's state is the base architecture's: nothing new to save or export
    assert set(merged.net_.module_.state_dict()) == set(plain.net_.module_.state_dict())


def test_adapters_learn_a_task():
    # adapters want a larger rate than full fine-tuning (0.01 left this one at chance)
    clf = FineTuneClassifier(pointwise_cnn(), adapter="lora", adapter_rank=4, max_epochs=15,
                             **{**KW, "lr": 5e-2}).fit(X_TOY, Y_TOY)
    assert clf.score(X_TOY, Y_TOY) >= 0.9


@pytest.mark.parametrize("merge", [True, False])
def test_adapted_models_survive_the_pickle_free_exchange(merge, tmp_path):
    clf = FineTuneRegressor(pointwise_cnn(), adapter="lora", adapter_merge=merge,
                            max_epochs=2, **KW).fit(X_TOY, np.linspace(0, 1, len(X_TOY)))
    export_model(clf, tmp_path / "m.safetensors")
    back = import_model(tmp_path / "m.safetensors", model=pointwise_cnn())
    np.testing.assert_allclose(back.predict(X_TOY), clf.predict(X_TOY), atol=1e-6)
    assert has_adapters(back.net_.module_) is (not merge)


def test_a_timm_vit_gets_adapters_in_its_attention_and_mlp():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16,
                            patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=3)
    clf = FineTuneClassifier(vit, adapter="lora", adapter_rank=4, unfreeze=1, max_epochs=2,
                             image_size=16, resize_size=16, random_state=0).fit(X_TOY, Y_TOY)
    trained = [r for r in clf.summary() if r["trainable"] and r["group"] != "head"]
    # the top group ("blocks": both blocks of a module passed as is): each block's qkv
    # (32->96), proj (32->32), fc1 (32->128) and fc2 (128->32) at rank 4
    assert [r["group"] for r in trained] == ["blocks"]
    assert sum(r["params"] for r in trained) == 2 * 4 * ((32 + 96) + (32 + 32) + (32 + 128)
                                                         + (128 + 32))


@pytest.mark.parametrize("params, match", [
    ({"unfreeze": 0}, "unfreeze=0 adapts nothing"),
    ({"adapter_targets": ["no.such.layer"]}, "found no layer .* matching adapter_targets"),
    ({"batchnorm": "recalibrate"}, "batchnorm='recalibrate' does not apply"),
])
def test_adapter_errors_name_the_problem(params, match):
    with pytest.raises(ValueError, match=match):
        FineTuneClassifier(pointwise_cnn(), adapter="lora", max_epochs=1,
                           **{**KW, **params}).fit(X_TOY, Y_TOY)


def test_separate_adapters_export_alone_in_a_small_file(tmp_path):
    clf = FineTuneClassifier(pointwise_cnn(), adapter="lora", adapter_merge=False,
                             max_epochs=3, **KW).fit(X_TOY, Y_TOY)
    export_model(clf, tmp_path / "full.safetensors")
    export_model(clf, tmp_path / "adapters.safetensors", adapters_only=True)
    small, full = (tmp_path / "adapters.safetensors").stat().st_size, \
        (tmp_path / "full.safetensors").stat().st_size
    assert small < 0.6 * full
    # the frozen base comes back from the model passed (the same pretrained weights)
    back = import_model(tmp_path / "adapters.safetensors", model=pointwise_cnn())
    np.testing.assert_allclose(back.predict_proba(X_TOY), clf.predict_proba(X_TOY),
                               atol=1e-6)
    # adapters trained on other base weights are refused, not silently misapplied
    with pytest.raises(ValueError, match="other base weights"):
        import_model(tmp_path / "adapters.safetensors", model=pointwise_cnn(seed=1))
    random = FineTuneClassifier("resnet18", weights=None, adapter="lora", adapter_merge=False,
                                max_epochs=1, **{**KW, "unfreeze": 1}).fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="random weights"):
        export_model(random, tmp_path / "r.safetensors", adapters_only=True)
    merged = FineTuneClassifier(pointwise_cnn(), adapter="lora", max_epochs=1,
                                **KW).fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="adapter_merge=False"):
        export_model(merged, tmp_path / "x.safetensors", adapters_only=True)
