"""Low-rank adapters (sktransfer._lora): exact at initialisation, only they train, they merge
into a plain module, and adapted modules pickle, deep-copy and run in bf16 / channels_last."""

from __future__ import annotations

import copy
import io
import pickle

import joblib
import pytest
import torch
import torchvision
from torch import nn

from sktransfer._lora import (
    adapter_names,
    adapter_state,
    add_adapters,
    default_targets,
    has_adapters,
    load_adapter_state,
    merge_adapters,
)


class Mixed(nn.Module):
    """Every supported kind of layer: kxk, depthwise and 1x1 convs, attention, linears."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.BatchNorm2d(8)
        self.pointwise = nn.Conv2d(8, 12, 1)
        self.attn = nn.MultiheadAttention(12, 2, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        x = self.pointwise(torch.relu(self.norm(self.depthwise(self.stem(x)))))
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(tokens, tokens, tokens, need_weights=False)[0]
        return self.fc(tokens.mean(1))


def _image(batch=2, size=8):
    return torch.randn(batch, 3, size, size)


def _tv_vit():
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1,
                                               num_heads=2, hidden_dim=8, mlp_dim=16,
                                               num_classes=3)
    return vit, _image(2, 32)


def _timm_vit():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1,
                            embed_dim=16, num_heads=2, num_classes=3)
    return vit, _image(2, 32)


BUILDERS = {
    "linear": lambda: (nn.Linear(5, 7), torch.randn(4, 5), [""]),
    "conv1x1": lambda: (nn.Conv2d(3, 6, 1), _image(), [""]),
    "conv3x3": lambda: (nn.Conv2d(3, 6, 3, padding=1, groups=3), _image(), [""]),
    "mha": lambda: (nn.MultiheadAttention(8, 2), torch.randn(5, 2, 8), [""]),
    "mixed": lambda: (Mixed(), _image(), None),
    "torchvision_vit": lambda: (*_tv_vit(), None),
    "timm_vit": lambda: (*_timm_vit(), None),
    "mobilenet_v3_small": lambda: (torchvision.models.mobilenet_v3_small(weights=None),
                                   _image(2, 32), None),
}


def _run(model, x):
    if isinstance(model, nn.MultiheadAttention):
        return model(x, x, x)[0]
    return model(x)


def _randomise_updates(model, seed=0):
    """Nonzero B (as after training), so that adapters change the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_outputs_are_identical_to_the_base_at_initialisation(kind):
    torch.manual_seed(0)
    model, x, names = BUILDERS[kind]()
    model.eval()
    with torch.no_grad():  # also the fused attention fast path (eval, no grad)
        base_no_grad = _run(model, x)
    base = _run(model, x)
    names = default_targets(model) if names is None else names
    assert names
    added = add_adapters(model, names, rank=2, alpha=4.0)
    assert sorted(added) == sorted(adapter_names(model)) and len(added) == 2 * len(names)
    assert has_adapters(model)
    with torch.no_grad():
        assert torch.equal(_run(model, x), base_no_grad)
    assert torch.equal(_run(model, x), base)
    _randomise_updates(model)
    with torch.no_grad():  # the adapters are in the forward
        assert (_run(model, x) - base).abs().max() > 1e-3 * base.abs().max()


def test_default_targets_are_linears_attention_and_pointwise_convs():
    assert default_targets(Mixed()) == ["pointwise", "attn", "attn.out_proj", "fc"]
    vit, _ = _tv_vit()
    targets = default_targets(vit)
    assert "conv_proj" not in targets  # the 16x16 patch embedding
    assert "encoder.layers.encoder_layer_0.self_attention" in targets  # its in_proj_weight
    assert "encoder.layers.encoder_layer_0.mlp.0" in targets
    net = torchvision.models.mobilenet_v3_small(weights=None)
    layers = dict(net.named_modules())
    targets = default_targets(net)
    convs = [n for n in targets if isinstance(layers[n], nn.Conv2d)]
    assert convs and all(layers[n].kernel_size == (1, 1) and layers[n].groups == 1
                         for n in convs)
    assert sum(isinstance(layers[n], nn.Linear) for n in targets) == 2
    add_adapters(net, targets[:3], rank=2, alpha=2)
    assert default_targets(net) == targets[3:]  # adapted layers are not targeted again


@pytest.mark.parametrize("layer, rank, expected", [
    (nn.Linear(5, 7), 3, 3 * (5 + 7)),
    (nn.Conv2d(4, 6, 3), 2, 2 * (6 + 4 * 9)),
    (nn.Conv2d(4, 6, 3, groups=2), 2, 2 * (6 + 2 * 9)),  # (out, in/groups*kh*kw)
    (nn.MultiheadAttention(8, 2), 2, 2 * (3 * 8 + 8)),  # one update of the fused q, k, v
    (nn.MultiheadAttention(8, 2, kdim=4, vdim=4), 2, 2 * (8 + 8) + 2 * 2 * (8 + 4)),
    (nn.Conv2d(16, 4, 1), 8, 4 * (16 + 4)),  # rank clipped to min(out, in) = 4
    (nn.Linear(5, 7), 9, 5 * (5 + 7)),
])
def test_trainable_parameter_counts(layer, rank, expected):
    layer.requires_grad_(False)
    names = add_adapters(layer, [""], rank=rank, alpha=1.0)
    params = dict(layer.named_parameters())
    assert sorted(n for n, p in params.items() if p.requires_grad) == sorted(names)
    assert sum(params[n].numel() for n in names) == expected


def test_clipped_layers_keep_the_scaling_of_the_requested_rank():
    layer = nn.Conv2d(16, 4, 1)
    add_adapters(layer, [""], rank=8, alpha=4.0)
    update = layer.parametrizations.weight[0]
    assert update.lora_A.shape == (4, 16) and update.lora_B.shape == (4, 4)
    assert update.scaling == 0.5


def test_adapted_weights_are_frozen_and_the_rest_is_left_alone():
    model = Mixed()
    add_adapters(model, ["pointwise", "attn", "fc"], rank=2, alpha=2.0)
    assert not model.pointwise.parametrizations.weight.original.requires_grad
    assert not model.attn.parametrizations.in_proj_weight.original.requires_grad
    assert model.fc.bias.requires_grad and model.attn.in_proj_bias.requires_grad
    assert model.stem.weight.requires_grad  # not adapted: the caller decides


def _train(model, x, target, steps, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_changes_only_the_adapters():
    torch.manual_seed(0)
    model = Mixed().eval()
    model.requires_grad_(False)
    names = add_adapters(model, default_targets(model), rank=2, alpha=4.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, target = _image(4), torch.randn(4, 3)
    _train(model, x, target, steps=3)
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(names)  # A moves from the second step on, B from the first
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith(".original"))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_adapters_alone_fit_a_fixed_batch(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
        x, targets = torch.randn(16, 6), default_targets(model)
    else:
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1),
                              nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(8, 2))
        x, targets = _image(16), ["0", *default_targets(model)]  # 3x3 stem too
    model.requires_grad_(False)
    add_adapters(model, targets, rank=2, alpha=4.0)
    losses = _train(model, x, torch.randn(16, 2), steps=60, lr=5e-2)
    assert losses[-1] < 0.4 * losses[0]


def _trained_mixed(memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = Mixed().eval().to(memory_format=memory_format)
    add_adapters(model, [*default_targets(model), "stem"], rank=2, alpha=4.0)
    _randomise_updates(model)
    return model


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_merged_module_is_plain_and_gives_the_adapted_outputs(memory_format):
    base_keys = list(Mixed().state_dict())
    model = _trained_mixed(memory_format)
    x = _image().to(memory_format=memory_format)
    stem_weight = model.stem.parametrizations.weight.original
    with torch.no_grad():
        adapted = model(x)
    assert merge_adapters(model) == 5
    assert type(model.attn) is nn.MultiheadAttention and type(model.fc) is nn.Linear
    assert not has_adapters(model) and adapter_names(model) == []
    assert list(model.state_dict()) == base_keys
    assert model.stem.weight is stem_weight  # optimizers' references stay valid
    assert model.stem.weight.requires_grad and model.stem.weight.dtype == torch.float32
    if memory_format == torch.channels_last:
        assert model.stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)
    assert merge_adapters(model) == 0


def test_merge_restores_a_frozen_weight_frozen():
    layer = nn.Linear(4, 4)
    layer.weight.requires_grad_(False)
    add_adapters(layer, [""], rank=1, alpha=1.0)
    merge_adapters(layer)
    assert not layer.weight.requires_grad and layer.bias.requires_grad


@pytest.mark.parametrize("dump", ["pickle", "joblib", "torch"])
def test_adapted_modules_round_trip_through_pickle(dump):
    model = nn.Sequential(_trained_mixed())
    x = _image()
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(model))
    elif dump == "joblib":
        joblib.dump(model, buffer)
        buffer.seek(0)
        loaded = joblib.load(buffer)
    else:
        torch.save(model, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    assert adapter_names(loaded) == adapter_names(model)
    assert not loaded[0].fc.parametrizations.weight.original.requires_grad
    loaded2 = pickle.loads(pickle.dumps(loaded))  # a loaded module pickles again
    merge_adapters(loaded2)
    with torch.no_grad():
        torch.testing.assert_close(loaded2(x), expected, atol=1e-5, rtol=1e-5)


def test_deep_copies_are_independent():
    model = _trained_mixed()
    x = _image()
    with torch.no_grad():
        expected = model(x)
    replica = copy.deepcopy(model)
    assert type(replica.fc) is not type(model.fc)  # its own parametrized class
    assert merge_adapters(replica) == 5
    with torch.no_grad():  # merging the copy left the original adapted
        assert torch.equal(model(x), expected)
        torch.testing.assert_close(replica(x), expected, atol=1e-5, rtol=1e-5)
    assert has_adapters(model)


def test_bf16_autocast():
    torch.manual_seed(0)
    model = Mixed().eval()
    x = _image()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        base = model(x)
    model.requires_grad_(False)
    add_adapters(model, default_targets(model), rank=2, alpha=4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            assert torch.equal(model(x), base)
        model(x).float().square().mean().backward()
    assert model.fc.parametrizations.weight[0].lora_B.grad.abs().sum() > 0
    assert model.fc.parametrizations.weight[0].lora_B.dtype == torch.float32
    _randomise_updates(model)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        adapted = model(x)
        merge_adapters(model)  # the merge itself computes in float32
        torch.testing.assert_close(model(x), adapted, atol=3e-2, rtol=3e-2)


def test_adapter_state_round_trips_into_a_fresh_adapted_copy():
    torch.manual_seed(0)
    base = Mixed().eval()
    fresh = copy.deepcopy(base)
    add_adapters(base, default_targets(base), rank=2, alpha=4.0)
    _randomise_updates(base)
    state = adapter_state(base)
    assert sorted(state) == sorted(adapter_names(base))
    assert all(not t.requires_grad for t in state.values())
    add_adapters(fresh, default_targets(fresh), rank=2, alpha=4.0)
    load_adapter_state(fresh, state)
    x = _image()
    with torch.no_grad():
        assert torch.equal(fresh(x), base(x))
    with pytest.raises(ValueError, match=r"missing \['attn\.out_proj\.parametrizations"):
        load_adapter_state(fresh, {k: v for k, v in state.items() if not k.startswith("attn")})
    wrong = dict(state, **{"fc.parametrizations.weight.0.lora_A": torch.zeros(3, 12)})
    with pytest.raises(ValueError, match=r"'fc\.parametrizations\.weight\.0\.lora_A' has shape"):
        load_adapter_state(fresh, wrong)


@pytest.mark.parametrize("names, rank, match", [
    (["fc"], 0, "rank must be an integer of at least 1, got 0"),
    (["fc"], 1.5, "rank must be an integer"),
    (["head"], 2, "no layer named 'head'"),
    (["norm"], 2, "layer 'norm': it is a BatchNorm2d, not an nn.Linear"),
    (["fc", "fc"], 2, "layer 'fc' is named twice"),
    (["fc", "emb"], 2, "layer 'emb': it is a Embedding"),
])
def test_errors_name_the_layer_and_change_nothing(names, rank, match):
    model = Mixed()
    model.emb = nn.Embedding(4, 3)
    keys = list(model.state_dict())
    with pytest.raises(ValueError, match=match):
        add_adapters(model, names, rank=rank, alpha=1.0)
    assert list(model.state_dict()) == keys and not has_adapters(model)


def test_a_layer_is_adapted_once():
    model = Mixed()
    add_adapters(model, ["fc"], rank=2, alpha=1.0)
    with pytest.raises(ValueError, match="layer 'fc': it already has an adapter"):
        add_adapters(model, ["pointwise", "fc"], rank=2, alpha=1.0)
    assert not has_adapters(model.pointwise)
    torch.nn.utils.parametrizations.weight_norm(model.pointwise)
    with pytest.raises(ValueError, match="'pointwise': it already has a parametrization"):
        add_adapters(model, ["pointwise"], rank=2, alpha=1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda():
    model = _trained_mixed().cuda().to(memory_format=torch.channels_last)
    x = _image().cuda().to(memory_format=torch.channels_last)
    assert model.fc.parametrizations.weight[0].lora_A.is_cuda
    with torch.no_grad():
        adapted = model(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(x).float().square().mean().backward()
    assert model.fc.parametrizations.weight[0].lora_B.grad.is_cuda
    loaded = pickle.loads(pickle.dumps(model))
    merge_adapters(model)
    assert model.stem.weight.is_cuda
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded(x), adapted, atol=1e-4, rtol=1e-4)
