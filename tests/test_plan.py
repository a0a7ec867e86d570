"""One training plan decides what trains at which rate; the optimizer and summary() follow it."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import FineTuneClassifier
from sktransfer._plan import HEAD, OTHER, decays, trained_after_warmup

from ._helpers import tiny_cnn

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
Y = np.array(["a", "b", "c"] * 4)


def fit(**params) -> FineTuneClassifier:
    defaults = dict(image_size=16, resize_size=16, max_epochs=2, freeze_epochs=1,
                    random_state=0, lr=0.1, lr_decay=0.5, schedule="constant")
    return FineTuneClassifier(tiny_cnn(), **{**defaults, **params}).fit(X, Y)


def optimizer_settings(clf) -> dict[str, tuple[float, float]]:
    """(lr, weight_decay) of every parameter, by name, as the optimizer holds them."""
    by_id = {}
    for group in clf.net_.optimizer_.param_groups:
        for p in group["params"]:
            by_id[id(p)] = (group["lr"], group["weight_decay"])
    return {n: by_id[id(p)] for n, p in clf.net_.module_.named_parameters()}


@pytest.mark.parametrize("unfreeze", [0, 1, "all"])
def test_the_plan_is_what_trains_what_the_optimizer_holds_and_what_summary_shows(unfreeze):
    clf = fit(unfreeze=unfreeze, weight_decay=0.05)
    plan = clf._plan(clf.net_.module_, clf._group_members, clf.lr_)
    # what trains after the warm-up: exactly the plan's names (and the head)
    trains = {n for n, p in clf.net_.module_.named_parameters() if p.requires_grad}
    assert trains == trained_after_warmup(plan)
    # each trained parameter's rate in the optimizer is its plan entry's rate
    settings = optimizer_settings(clf)
    for entry in plan:
        for name in entry.names:
            if entry.trainable:
                assert settings[name][0] == pytest.approx(entry.lr), name
    # summary() is the plan, row for row
    assert clf.summary() == [{"group": e.group, "params": e.n_params,
                              "trainable": e.trainable, "lr": e.lr} for e in plan]
    assert sum(r["params"] for r in clf.summary()) == sum(
        p.numel() for p in clf.net_.module_.parameters())


def test_no_weight_decay_on_biases_and_normalisation_weights():
    clf = fit(unfreeze="all", weight_decay=0.05)
    settings = optimizer_settings(clf)
    module = clf.net_.module_
    assert settings["body.net.1.weight"][1] == 0.0  # BatchNorm scale
    assert settings["body.net.0.bias"][1] == 0.0
    assert settings["head.bias"][1] == 0.0
    assert settings["body.net.0.weight"][1] == 0.05  # a convolution's kernel
    assert settings["head.weight"][1] == 0.05
    for name, p in module.named_parameters():
        assert settings[name][1] == (0.05 if decays(name, p) else 0.0), name
        assert decays(name, p) == (p.ndim > 1)


def test_parameters_outside_every_group_train_only_with_all_at_the_stem_rate():
    groups = {"low": ["0"], "top": ["3"]}  # BatchNorms 1 and 4 belong to no group
    every = fit(unfreeze="all", groups=groups)
    rows = {r["group"]: r for r in every.summary()}
    assert list(rows) == ["low", "top", OTHER, HEAD]
    assert rows[OTHER]["trainable"] and rows[OTHER]["lr"] == pytest.approx(rows["low"]["lr"])
    assert rows[OTHER]["params"] == 2 * (8 + 16)  # two BatchNorms' weights and biases
    assert optimizer_settings(every)["body.net.4.weight"][0] == pytest.approx(0.1 * 0.5 ** 2)
    top = fit(unfreeze=1, groups=groups)
    rows = {r["group"]: r for r in top.summary()}
    assert not rows[OTHER]["trainable"] and rows[OTHER]["lr"] is None
    assert not top.net_.module_.body.net[4].weight.requires_grad
