"""Compute cost: FLOPs from torch's counter, linear in images, energy when codecarbon is there."""

from __future__ import annotations

import dataclasses
import pickle
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sktransfer import (
    ComputeCost,
    FineTuneClassifier,
    PretrainedFeatureExtractor,
    _cost,
    fit_cost,
)
from sktransfer._cost import count_flops

from ._helpers import tiny_cnn

RNG = np.random.default_rng(0)
X8 = RNG.integers(0, 256, size=(8, 18, 18, 3), dtype=np.uint8)
Y8 = np.array(["a", "b"] * 4)
PREP = {"image_size": 16, "resize_size": 16}


def test_forward_flops_match_the_conv_formula_and_torchs_counter():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    forward, backward = count_flops(conv, (3, 16, 16))
    assert forward == 2 * 3 * 8 * 3 * 3 * 16 * 16  # a multiply-add is 2 FLOPs
    assert backward == 0  # not training

    net = tiny_cnn()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(4, 3, 16, 16))  # real tensors, real arithmetic
    assert count_flops(net, (3, 16, 16))[0] == counter.get_total_flops() // 4


class _DataDependent(nn.Module):
    """A forward pass that reads values (cannot run on the meta device)."""

    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, x):
        return self.net(x) * (2.0 if x.sum().item() > 0 else 1.0)


def test_forward_that_reads_values_is_counted_on_a_cpu_copy():
    module = _DataDependent()
    assert count_flops(module, (3, 16, 16)) == count_flops(module.net, (3, 16, 16))
    assert count_flops(module, (3, 16, 16), train=True)[1] > 0


def test_backward_flops_follow_what_trains():
    net = tiny_cnn()
    _, all_trained = count_flops(net, (3, 16, 16), train=True)
    for p in net[0].parameters():
        p.requires_grad_(False)
    _, stem_frozen = count_flops(net, (3, 16, 16), train=True)
    for p in net.parameters():
        p.requires_grad_(False)
    _, nothing = count_flops(net, (3, 16, 16), train=True)
    assert all_trained > stem_frozen > nothing == 0
    # the real module was not touched: no gradients, weights on the CPU
    assert all(p.grad is None and p.device.type == "cpu" for p in net.parameters())


def test_extractor_cost_grows_linearly_with_images():
    ext = PretrainedFeatureExtractor(tiny_cnn(), precision="float32", **PREP).fit()
    assert ext.fit_cost_.n_images == 0
    ext.transform(X8)
    one = ext.transform_cost_
    ext.transform(np.concatenate([X8, X8]))
    two = ext.transform_cost_
    assert isinstance(one, ComputeCost)
    assert (one.n_images, two.n_images) == (8, 16)
    assert one.forward_flops == 8 * ext.flops_per_image_ > 0
    assert two.forward_flops == 2 * one.forward_flops
    assert one.backward_flops == 0
    assert (one.device, one.precision) == ("cpu", "float32")
    assert one.wall_time_s > 0


def test_layer_taps_count_only_the_layers_run():
    full = PretrainedFeatureExtractor(tiny_cnn(), **PREP).fit()
    early = PretrainedFeatureExtractor(tiny_cnn(), layer="2", **PREP).fit()
    assert 0 < early.flops_per_image_ < full.flops_per_image_


def test_cached_images_cost_nothing(tmp_path):
    ext = PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, **PREP).fit()
    ext.transform(X8[:5])
    ext.transform(X8)
    assert ext.transform_cost_.n_images == 3  # five came from the cache


def test_a_fully_cached_fit_and_transform_count_no_flops_and_run_no_forward_pass(
        tmp_path, monkeypatch):
    """What a search over the head does after its first fold: every embedding is in the
    cache, so neither the FLOP count (a copy of the network, a quarter of a second for an
    EfficientNet) nor any forward pass may run."""
    warm = PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, **PREP).fit()
    expected = warm.transform(X8)
    counts, forwards = [], []
    monkeypatch.setattr(_cost, "_MEMO", {})  # a fresh process: nothing counted yet
    real = _cost._count_any
    monkeypatch.setattr(_cost, "_count_any", lambda *a: counts.append(a) or real(*a))
    model = tiny_cnn()

    def record(module, inputs):  # real passes only (shapes are probed on "meta")
        if not inputs[0].is_meta:
            forwards.append(len(inputs[0]))

    model[0].register_forward_pre_hook(record)
    ext = PretrainedFeatureExtractor(model, cache=tmp_path, **PREP)
    np.testing.assert_array_equal(ext.fit(X8).transform(X8), expected)
    assert counts == [] and forwards == []
    assert ext.transform_cost_.n_images == ext.transform_cost_.forward_flops == 0
    # the count happens when it is needed: the first image that misses the cache
    ext.transform(X8[:3] // 2)
    assert len(counts) == 1 and forwards == [3]
    assert ext.transform_cost_.forward_flops == 3 * warm.flops_per_image_ > 0


def test_flops_are_counted_once_per_architecture_input_and_trained_set(monkeypatch):
    counts = []
    real = _cost._count_any
    monkeypatch.setattr(_cost, "_MEMO", {})
    monkeypatch.setattr(_cost, "_count_any", lambda *a: counts.append(a[1:3]) or real(*a))
    for seed in range(3):  # refits in a search: other weights, the same architecture
        PretrainedFeatureExtractor(tiny_cnn(seed=seed), precision="float32",
                                   **PREP).fit().transform(X8)
    assert counts == [((3, 16, 16), False)]
    net = tiny_cnn()
    assert count_flops(net, (3, 16, 16), train=True) == count_flops(
        tiny_cnn(seed=1), (3, 16, 16), train=True)
    net[0].requires_grad_(False)  # another trained set: another backward count
    frozen_stem = count_flops(net, (3, 16, 16), train=True)
    count_flops(net, (3, 32, 32))  # another input size
    count_flops(tiny_cnn(n_classes=3), (3, 16, 16))  # another architecture
    assert len(counts) == 5
    assert frozen_stem[1] < count_flops(tiny_cnn(), (3, 16, 16), train=True)[1]


def test_costs_add_up_and_energy_only_when_both_have_it():
    a = ComputeCost(1.0, 2, 10, 4, "cpu", "float32", 1e-3, 5e-4, "codecarbon x")
    b = ComputeCost(2.0, 3, 20, 0, "cpu", "bfloat16", 2e-3, 1e-3, "codecarbon x")
    total = a + b
    assert (total.wall_time_s, total.n_images, total.total_flops) == (3.0, 5, 34)
    assert total.precision == "float32 + bfloat16" and total.device == "cpu"
    assert total.energy_kwh == pytest.approx(3e-3) and total.energy_method == "codecarbon x"
    unmeasured = a + dataclasses.replace(b, energy_kwh=None, co2_kg=None, energy_method=None)
    assert unmeasured.energy_kwh is None and unmeasured.co2_kg is None
    assert unmeasured.n_images == 5


def test_pipeline_fit_cost_includes_embedding_the_training_images():
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), **PREP),
                         LogisticRegression()).fit(X8, Y8)
    ext = pipe[0]
    assert fit_cost(pipe) == ext.fit_cost_
    assert ext.fit_cost_.n_images == 8
    assert ext.fit_cost_.forward_flops == 8 * ext.flops_per_image_
    # fit_transform gives what fit().transform() gives
    alone = PretrainedFeatureExtractor(tiny_cnn(), **PREP)
    np.testing.assert_array_equal(pipe[:-1].transform(X8), alone.fit(X8).transform(X8))
    assert alone.fit_cost_.n_images == 0  # fit alone embeds nothing


def test_fit_cost_of_a_search_is_its_refit_and_none_without_a_network():
    search = GridSearchCV(_finetune(max_epochs=2), {"unfreeze": [0, "all"]}, cv=2)
    search.fit(X8, Y8)
    assert fit_cost(search) == search.best_estimator_.fit_cost_
    assert fit_cost(make_pipeline(LogisticRegression()).fit(X8.reshape(8, -1), Y8)) is None


def _finetune(**params):
    defaults = {"max_epochs": 3, "freeze_epochs": 1, "unfreeze": "all",
                "validation_fraction": 0, "random_state": 0, **PREP}
    return FineTuneClassifier(tiny_cnn(), **{**defaults, **params})


def test_finetune_cost_counts_every_pass_and_scales_with_images():
    one = _finetune().fit(X8, Y8).fit_cost_
    two = _finetune().fit(np.concatenate([X8, X8]), np.concatenate([Y8, Y8])).fit_cost_
    assert one.n_images == 3 * 8  # three epochs
    assert two.n_images == 2 * one.n_images
    assert two.forward_flops == 2 * one.forward_flops
    assert two.backward_flops == 2 * one.backward_flops > 0


def test_finetune_cost_counts_validation_and_recalibration():
    plain = _finetune().fit(X8, Y8).fit_cost_
    recal = _finetune(batchnorm="recalibrate").fit(X8, Y8).fit_cost_
    assert recal.n_images == plain.n_images + 8  # one pass over the training images
    valid = _finetune(validation_fraction=0.25).fit(X8, Y8).fit_cost_
    assert valid.n_images == 3 * 6 + 3 * 2  # six train, two validation images per epoch


def test_frozen_layers_cost_no_backward():
    head_only = _finetune(unfreeze=0).fit(X8, Y8).fit_cost_
    every = _finetune().fit(X8, Y8).fit_cost_
    assert head_only.forward_flops == every.forward_flops
    assert 0 < head_only.backward_flops < every.backward_flops


def test_cost_survives_pickling_without_the_meter():
    clf = _finetune().fit(X8, Y8)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.fit_cost_ == clf.fit_cost_
    assert loaded.net_.cost_meter is None


@pytest.fixture
def fresh_energy(monkeypatch):
    """A new process-wide energy tracker for this test."""
    for name in ("_tracker", "_method", "_failed"):
        monkeypatch.setattr(_cost._Energy, name, getattr(_cost._Energy, name))
    monkeypatch.setattr(_cost._Energy, "_tracker", None)
    monkeypatch.setattr(_cost._Energy, "_failed", False)
    monkeypatch.setenv(_cost.ENERGY_ENV, "1")  # conftest turns it off for the other tests


def test_energy_is_measured_when_codecarbon_is_installed(fresh_energy):
    pytest.importorskip("codecarbon")  # in the dev extra, so make test runs this
    cost = _finetune().fit(X8, Y8).fit_cost_
    assert cost.energy_kwh > 0 and cost.co2_kg > 0
    assert cost.energy_method.startswith("codecarbon ")
    assert "Wh" in str(cost)


def test_calls_without_a_network_pass_report_zero_energy_without_a_codecarbon_task(
        fresh_energy, monkeypatch, tmp_path):
    """The extractor's measurement starts at its first batch: fit (loading only) and a
    fully cached transform cost no codecarbon task (a few ms each, 13 of them per
    search), and their 0 kWh add up with the measured calls."""
    pytest.importorskip("codecarbon")
    tasks = []
    real_start = _cost._Energy.start.__func__
    monkeypatch.setattr(_cost._Energy, "start", classmethod(
        lambda cls: tasks.append(1) or real_start(cls)))
    pipe = make_pipeline(PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, **PREP),
                         LogisticRegression()).fit(X8, Y8)  # fit + embedding: one task
    assert len(tasks) == 1
    cost = fit_cost(pipe)
    assert cost.energy_kwh > 0 and cost.energy_method.startswith("codecarbon ")
    ext = PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, **PREP).fit()
    ext.transform(X8)  # every embedding cached
    assert len(tasks) == 1
    assert ext.fit_cost_.energy_kwh == ext.transform_cost_.energy_kwh == 0.0
    total = ext.fit_cost_ + cost
    assert total.energy_kwh == cost.energy_kwh and total.energy_method == cost.energy_method


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_energy_measurement_can_be_turned_off(fresh_energy, monkeypatch, value):
    pytest.importorskip("codecarbon")
    monkeypatch.setenv(_cost.ENERGY_ENV, value)
    cost = _finetune().fit(X8, Y8).fit_cost_
    assert cost.energy_kwh is None and cost.energy_method is None
    assert _cost._Energy._tracker is None  # codecarbon was not even started
    assert cost.n_images > 0 and cost.forward_flops > 0


def test_no_energy_without_codecarbon(fresh_energy, monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import fails
    ext = PretrainedFeatureExtractor(tiny_cnn(), **PREP).fit()
    ext.transform(X8)
    cost = ext.transform_cost_
    assert cost.energy_kwh is None and cost.co2_kg is None and cost.energy_method is None
    assert cost.n_images == 8  # the rest is still measured
