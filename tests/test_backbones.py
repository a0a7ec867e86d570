"""Backbone specs: torchvision names, weights API and hub cache, local files, modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm
from torchvision.transforms import InterpolationMode

from sktransfer import (
    FineTuneClassifier,
    PretrainedFeatureExtractor,
    WeightsUnavailableError,
    load_backbone,
)
from sktransfer.backbones._groups import default_groups
from sktransfer.backbones._heads import strip_head

from ._helpers import tiny_cnn


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sb)


def test_weights_from_hub_cache_are_loaded(cached_mobilenet, no_network):
    backbone = load_backbone("mobilenet_v3_small", weights="DEFAULT")
    expected = torch.load(cached_mobilenet, weights_only=True)
    got = backbone.body.net.state_dict()
    for key in ("features.0.0.weight", "features.12.1.running_var"):
        assert torch.equal(got[key], expected[key])
    assert backbone.num_features == 576  # pooled last conv stage, classifier removed


def test_weights_name_resolves_through_enum(cached_mobilenet, no_network):
    by_name = load_backbone("mobilenet_v3_small", weights="IMAGENET1K_V1")
    qualified = load_backbone("mobilenet_v3_small", weights="MobileNet_V3_Small_Weights.DEFAULT")
    assert _same_params(by_name.body, qualified.body)


def test_offline_without_cache_gives_actionable_error(torch_home, no_network):
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("mobilenet_v3_small", weights="DEFAULT")
    message = str(info.value)
    for hint in ("mobilenet_v3_small-047dcff4.pth", "TORCH_HOME", "weights=None",
                 "weights='/path/to/weights.pth'"):
        assert hint in message


def test_unknown_names_suggest_alternatives():
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        load_backbone("resnet5O")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_backbone("resnet18", weights="IMAGENET_BEST")


def test_local_weights_file(tmp_path):
    torch.manual_seed(5)
    source = tvm.mobilenet_v3_small(weights=None)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    backbone = load_backbone("mobilenet_v3_small", weights=str(path))
    assert torch.equal(backbone.body.net.features[0][0].weight, source.features[0][0].weight)


class NotTensors:
    """An arbitrary object: unpickling it would run code, weights_only refuses it."""


def test_local_weights_file_without_the_classifier(tmp_path):
    torch.manual_seed(6)
    source = tvm.mobilenet_v3_small(weights=None)
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    torch.save(body, tmp_path / "body.pth")
    backbone = load_backbone("mobilenet_v3_small", weights=tmp_path / "body.pth")
    assert torch.equal(backbone.body.net.features[0][0].weight, source.features[0][0].weight)


def test_local_weights_file_is_loaded_with_weights_only(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"x": NotTensors()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_backbone("mobilenet_v3_small", weights=path)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(tiny_cnn().state_dict(), path)
    with pytest.raises(ValueError, match="does not match the architecture"):
        load_backbone("mobilenet_v3_small", weights=path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone("mobilenet_v3_small", weights=str(tmp_path / "missing.pth"))


def test_random_init_keeps_weights_preprocessing():
    backbone = load_backbone("efficientnet_b0", weights=None)
    prep = backbone.preprocessing
    assert (prep.resize_size, prep.crop_size) == (256, 224)
    assert prep.interpolation == InterpolationMode.BICUBIC
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406))


def test_preprocessing_overrides():
    prep = load_backbone("resnet18", weights=None, image_size=112, mean=(0.5,) * 3,
                         std=(0.25,) * 3).preprocessing
    assert (prep.crop_size, prep.resize_size) == (112, 128)
    assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="smaller than the crop"):
        load_backbone("resnet18", weights=None, image_size=64, resize_size=32)


def test_module_is_copied_not_modified(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    backbone = load_backbone(tiny_model)
    assert isinstance(tiny_model[-1], nn.Linear)  # the user's head is still there
    assert backbone.num_features == 16
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())


def test_state_dict_into_module(tiny_model, tmp_path):
    other = tiny_cnn(seed=9)
    path = tmp_path / "tiny.pt"
    torch.save(other.state_dict(), path)
    backbone = load_backbone(tiny_model, weights=path)
    assert torch.equal(backbone.body.net[0].weight, other[0].weight)
    with pytest.raises(ValueError, match="cannot apply to an nn.Module"):
        load_backbone(tiny_model, weights="IMAGENET1K_V1")


@pytest.mark.parametrize(
    "name, n_features, first_groups",
    [
        ("resnet18", 512, ["stem", "layer1", "layer2", "layer3", "layer4"]),
        ("efficientnet_b0", 1280, ["features.0", "features.1"]),
        ("mobilenet_v3_small", 576, ["features.0", "features.1"]),
        ("convnext_tiny", 768, ["features.0", "features.1"]),
        ("densenet121", 1024, ["stem", "denseblock1", "denseblock2", "denseblock3"]),
        ("vgg11", 512, ["block1", "block2", "block3", "block4", "block5"]),
        ("regnet_y_400mf", 440, ["stem", "trunk_output.block1"]),
    ],
)
def test_families_give_pooled_features_and_natural_groups(name, n_features, first_groups):
    backbone = load_backbone(name, weights=None, image_size=64)
    assert backbone.num_features == n_features
    assert [g for g, _ in backbone.groups][: len(first_groups)] == first_groups
    with torch.no_grad():
        out = backbone.body.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, n_features)


def test_groups_of_any_module_are_its_children_with_params():
    net = strip_head(tiny_cnn())
    # each BatchNorm joins the conv before it; ReLU and pooling hold no parameters
    assert default_groups(net) == [("0", ["0", "1"]), ("3", ["3", "4"])]


def test_module_lists_of_blocks_are_expanded():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 3) for _ in range(3)])
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.bn(self.stem(x))
            for block in self.blocks:
                x = block(x)
            return self.fc(x.mean(dim=(2, 3)))

    backbone = load_backbone(Net())
    assert backbone.groups == [("stem", ["stem", "bn"]), ("blocks.0", ["blocks.0"]),
                               ("blocks.1", ["blocks.1"]), ("blocks.2", ["blocks.2"])]


def test_user_named_groups(tiny_model):
    backbone = load_backbone(tiny_model, groups={"low": ["0", "1"], "high": ["3", "4"]})
    assert backbone.groups == [("low", ["0", "1"]), ("high", ["3", "4"])]
    with pytest.raises(ValueError, match="'nope', which is not a submodule"):
        load_backbone(tiny_model, groups=[["0"], "nope"])


def test_extractor_with_torchvision_name_end_to_end(cached_mobilenet, no_network):
    extractor = PretrainedFeatureExtractor("mobilenet_v3_small", image_size=32).fit()
    X = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    out = extractor.transform(X)
    assert out.shape == (3, 576) and np.isfinite(out).all()


def test_headless_sequential_is_kept_whole():
    body = load_backbone(tiny_cnn()).body.net  # already without its head
    again = load_backbone(body)
    assert len(again.body.net) == len(body) and again.num_features == 16
    assert [g for g, _ in again.groups] == ["0", "3"]


def test_shared_weights_are_new_modules_over_the_memos_tensors(tmp_path):
    """What a frozen extractor's fits get: no copy of the data, and nothing they do to
    their modules (mode, device or memory format, requires_grad, hooks) reaches the
    memo or another fit's network."""
    from sktransfer.backbones._memo import _MEMO

    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(load_backbone("resnet18", weights=None).body.net.state_dict(), path)
    load_backbone("resnet18", weights=path)  # the first load fills the memo
    first = load_backbone("resnet18", weights=path, share_weights=True).body
    second = load_backbone("resnet18", weights=path, share_weights=True).body
    copied = load_backbone("resnet18", weights=path).body
    pairs = list(zip(first.parameters(), second.parameters(), strict=True))
    assert all(a is not b and a.data_ptr() == b.data_ptr() for a, b in pairs)
    assert all(a.data_ptr() != c.data_ptr()
               for a, c in zip(first.parameters(), copied.parameters(), strict=True))
    first.train().requires_grad_(False)
    first.to(memory_format=torch.channels_last)
    first.net.conv1.register_forward_hook(lambda *args: None)
    assert not second.net.training and not second.net.bn1.training
    assert all(p.requires_grad for p in second.parameters())
    assert second.net.conv1.weight.is_contiguous() and not second.net.conv1._forward_hooks
    shared = second.net.conv1.weight.data_ptr()
    memo = next(net for net, *_ in _MEMO.values()  # (other tests' networks may be there)
                if hasattr(net, "conv1") and net.conv1.weight.data_ptr() == shared)
    assert all(p.requires_grad for p in memo.parameters()) and not memo.conv1._forward_hooks
    assert memo.conv1.weight.is_contiguous()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(second.eval()(x), copied.eval()(x), rtol=0, atol=0)
        # a user's in-place edit of a shared network is noticed: later loads read the file
        second.net.conv1.weight.mul_(0)
    again = load_backbone("resnet18", weights=path, share_weights=True).body
    assert again.net.conv1.weight.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), copied(x), rtol=0, atol=0)


def test_segmentation_models_load_only_where_asked_for():
    """A segmentation model's name is refused by classification estimators (before any
    weights load) and loads with its decoder for load_backbone(segmentation=True)."""
    with pytest.raises(ValueError, match=r"'fcn_resnet50' is a segmentation model.*"
                                         r"FineTuneSegmenter.*--task segmentation"):
        load_backbone("fcn_resnet50")  # "DEFAULT" weights: nothing was downloaded
    with pytest.raises(ValueError, match="is a segmentation model"):
        FineTuneClassifier("torchvision:lraspp_mobilenet_v3_large").fit(
            np.zeros((2, 8, 8, 3), dtype=np.uint8), [0, 1])
    seg = load_backbone("torchvision:lraspp_mobilenet_v3_large", None, image_size=32,
                        segmentation=True)
    assert seg.decoder is not None and seg.num_features == 0
    maps = seg.body(torch.zeros(1, 3, 32, 32))
    assert isinstance(maps, dict) and set(maps) == {"low", "high"}
    plain = load_backbone("resnet18", None, segmentation=True)  # classification as usual
    assert plain.decoder is None and plain.num_features == 512
