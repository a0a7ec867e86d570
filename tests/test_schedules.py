"""Learning rates over layers and time: per-batch schedules, per-group rates, the spread."""

from __future__ import annotations

import math

import pytest
from skorch.callbacks import Callback

from sktransfer._schedules import LR_SPREAD, layer_factor, schedule_factor

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy


class RateSpy(Callback):
    """The rate of every optimizer parameter group at every training batch."""

    def initialize(self):
        self.rates_ = []  # (epoch, {param id: rate})
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            module = net.module_
            names = {id(p): n for n, p in module.named_parameters()}
            rates = {}
            for group in net.optimizer_.param_groups:
                for p in group["params"]:
                    rates[names[id(p)]] = group["lr"]
            self.rates_.append((len(net.history), rates))


def expected(kind: str, step: int, total: int) -> float:
    t = step / (total - 1)
    if kind == "onecycle":
        if t < 0.25:
            u = t / 0.25
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * u)) / 2
        u = (t - 0.25) / 0.75
        return 1e-5 + (1 - 1e-5) * (1 + math.cos(math.pi * u)) / 2
    if kind == "cosine":
        warm = max(1, round(0.1 * total))
        if step < warm:
            return (step + 1) / warm
        return (1 + math.cos(math.pi * (step - warm) / (total - warm))) / 2
    return 1.0


@pytest.mark.parametrize("kind", ["onecycle", "cosine", "constant"])
def test_schedule_per_batch_and_per_group_restarting_for_the_unfrozen_phase(kind):
    spy = RateSpy()
    # 24 images, batch 6: 4 steps per epoch; phase 1 = 2 epochs (8 steps), phase 2 = 3 (12)
    groups = {"low": ["0", "1"], "top": ["3", "4"]}
    clf = toy(unfreeze=2, lr=0.1, lr_decay=0.5, freeze_epochs=2, max_epochs=5,
              batch_size=6, schedule=kind, groups=groups, callbacks=[spy])
    clf.fit(X_TOY, Y_TOY)
    assert len(spy.rates_) == 20
    phase1 = [r for epoch, r in spy.rates_ if epoch <= 2]
    phase2 = [r for epoch, r in spy.rates_ if epoch > 2]
    for step, rates in enumerate(phase1):
        assert rates["head.weight"] == pytest.approx(0.1 * expected(kind, step, 8), rel=1e-9)
    for step, rates in enumerate(phase2):
        factor = expected(kind, step, 12)
        assert rates["head.weight"] == pytest.approx(0.1 * factor, rel=1e-9)
        assert rates["body.net.3.weight"] == pytest.approx(0.05 * factor, rel=1e-9)
        assert rates["body.net.0.weight"] == pytest.approx(0.025 * factor, rel=1e-9)
    if kind == "onecycle":  # the restart: back to lr/25 at the first unfrozen step
        assert phase2[0]["head.weight"] == pytest.approx(0.1 / 25)
        assert max(r["head.weight"] for r in phase2) == pytest.approx(0.1, rel=1e-2)


def test_default_spread_is_a_fixed_head_to_stem_ratio_whatever_the_depth():
    for n_groups in (2, 5, 9, 18):
        assert layer_factor(None, n_groups) ** n_groups == pytest.approx(1 / LR_SPREAD)
    assert layer_factor(0.3, 9) == 0.3


def test_summary_shows_the_rates_of_every_group():
    model = tiny_cnn()  # groups "0" (stem) and "3" (top)
    clf = toy(model, unfreeze="all", lr=0.01, freeze_epochs=1, max_epochs=2).fit(X_TOY, Y_TOY)
    rows = {r["group"]: r["lr"] for r in clf.summary()}
    assert rows["head"] == pytest.approx(0.01)
    assert rows["3"] == pytest.approx(0.01 / LR_SPREAD ** 0.5)
    assert rows["0"] == pytest.approx(0.01 / LR_SPREAD)  # the stem: lr / 100


def test_schedule_factor_edges():
    assert schedule_factor("onecycle", 0, 100) == pytest.approx(1 / 25)
    assert schedule_factor("onecycle", 99, 100) == pytest.approx(1e-5)
    assert 0 < schedule_factor("cosine", 99, 100) < 1e-3  # annealed to 0 at the phase end
    assert schedule_factor("cosine", 0, 100) == pytest.approx(0.1)  # warm-up: 1/10 first
    assert schedule_factor("constant", 7, 100) == 1.0
    assert schedule_factor("onecycle", 0, 1) == 1.0  # a single step: the full rate
    with pytest.raises(ValueError, match="schedule must be one of"):
        schedule_factor("linear", 0, 10)


def test_invalid_schedule_and_batchnorm_fail_at_fit():
    with pytest.raises(ValueError, match="'schedule' parameter"):
        toy(schedule="step").fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="'batchnorm' parameter"):
        toy(batchnorm="eval").fit(X_TOY, Y_TOY)
