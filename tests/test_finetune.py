"""FineTuneClassifier: freezing by depth, layer-wise LR, two phases, BatchNorm, transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback
from torch import nn

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

from ._helpers import X_TOY, Y_TOY, digits_cnn, tiny_cnn, toy


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


# tiny_cnn groups after head removal: "0" (conv 0 + BN 1), "3" (conv 3 + BN 4, the top)
@pytest.mark.parametrize(
    "unfreeze, trained, frozen",
    [
        (0, [], ["0", "1", "3", "4"]),
        (1, ["3", "4"], ["0", "1"]),
        ("all", ["0", "1", "3", "4"], []),
    ],
)
def test_unfreeze_depth_trains_exactly_the_top_groups(unfreeze, trained, frozen):
    model = tiny_cnn()
    before = {f"body.net.{k}": v for k, v in snapshot(model).items()}
    clf = toy(model, unfreeze=unfreeze, freeze_epochs=1).fit(X_TOY, Y_TOY)
    after = snapshot(clf.net_.module_)
    for layer in trained:
        assert changed(before, after, f"body.net.{layer}.")
    for layer in frozen:
        assert not changed(before, after, f"body.net.{layer}.")  # BN running stats included
    rows = {r["group"]: r for r in clf.summary()}
    assert [g for g, r in rows.items() if r["trainable"]] == [*trained[::2], "head"]


def test_layer_wise_learning_rates_in_the_optimizer():
    groups = {"low": ["0", "1"], "mid": ["3"], "top": ["4"]}  # user-named groups
    clf = toy(unfreeze=2, lr=0.1, lr_decay=0.5, freeze_epochs=1, groups=groups,
              schedule="constant")
    clf.fit(X_TOY, Y_TOY)
    module = clf.net_.module_
    lr_of = {}
    for group in clf.net_.optimizer_.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    assert lr_of[id(module.head.weight)] == pytest.approx(0.1)
    assert lr_of[id(module.body.net[4].weight)] == pytest.approx(0.05)  # depth 1
    assert lr_of[id(module.body.net[3].weight)] == pytest.approx(0.025)  # depth 2
    summary = {r["group"]: r["lr"] for r in clf.summary()}
    assert summary == {"low": None, "mid": pytest.approx(0.025), "top": pytest.approx(0.05),
                       "head": 0.1}


def test_two_phase_schedule_head_first_then_fresh_optimizer():
    events = []

    class Spy(Callback):
        def on_epoch_end(self, net, **kwargs):
            body_trainable = [p.requires_grad for p in net.module_.body.parameters()]
            state = net.optimizer_.state
            events.append((any(body_trainable), len(state), id(net.optimizer_)))

    toy(unfreeze=1, freeze_epochs=2, max_epochs=4, callbacks=[Spy()]).fit(X_TOY, Y_TOY)
    assert [e[0] for e in events] == [False, False, True, True]
    # the optimizer was rebuilt at the switch: a new object with fresh state
    assert events[1][2] != events[2][2] and events[2][2] == events[3][2]
    assert events[2][1] > events[1][1]  # Adam state now also holds the unfrozen group


def test_frozen_batchnorm_stays_in_eval_mode_during_training():
    modes = []

    class Spy(Callback):
        def on_batch_end(self, net, training, **kwargs):
            if training:
                body = net.module_.body.net
                modes.append((body[1].training, body[4].training, net.module_.head.training))

    toy(unfreeze=1, freeze_epochs=0, batchnorm="train", callbacks=[Spy()]).fit(X_TOY, Y_TOY)
    # the top group (conv 3 + BN 4) is trained, BN in train mode; BN 1 is frozen, in eval
    assert modes and all(m == (False, True, True) for m in modes)


def test_unfreeze_out_of_range_states_the_valid_range():
    message = r"unfreeze=5 but .* has 2 layer groups .* 0\.\.2 or 'all'"
    with pytest.raises(ValueError, match=message):
        toy(unfreeze=5).fit(X_TOY, Y_TOY)


def test_predict_proba_classes_and_score():
    clf = toy(max_epochs=15).fit(X_TOY, Y_TOY)
    proba = clf.predict_proba(X_TOY)
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(X_TOY)) <= set(Y_TOY)
    assert clf.score(X_TOY, Y_TOY) > 0.6  # chance is 1/3


def test_same_seed_same_predictions_and_global_rng_untouched():
    clf = toy(unfreeze="all", freeze_epochs=1, augment=True)
    state = torch.get_rng_state()
    a = clf.fit(X_TOY, Y_TOY)
    assert torch.equal(torch.get_rng_state(), state)
    b = toy(unfreeze="all", freeze_epochs=1, augment=True).fit(X_TOY, Y_TOY)
    c = toy(unfreeze="all", freeze_epochs=1, augment=True, random_state=1).fit(X_TOY, Y_TOY)
    np.testing.assert_array_equal(a.predict_proba(X_TOY), b.predict_proba(X_TOY))
    assert not np.array_equal(a.predict_proba(X_TOY), c.predict_proba(X_TOY))
    state = torch.get_rng_state()
    a.predict(X_TOY)  # (a DataLoader draws its seed from the global generator)
    assert torch.equal(torch.get_rng_state(), state)


def test_progress_shown_when_verbose(capsys):
    toy(max_epochs=2, verbose=True).fit(X_TOY, Y_TOY)
    out = capsys.readouterr()
    assert "train_loss" in out.out  # skorch's epoch table
    toy(max_epochs=2).fit(X_TOY, Y_TOY)
    assert "train_loss" not in capsys.readouterr().out


def test_worker_processes_give_the_same_model():
    a = toy(max_epochs=2).fit(X_TOY, Y_TOY).predict_proba(X_TOY)
    b = toy(max_epochs=2, num_workers=2).fit(X_TOY, Y_TOY).predict_proba(X_TOY)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_augmentation_only_at_training():
    calls = []

    def augment(img):
        calls.append(1)
        return torch.flip(img, dims=[-1])

    clf = toy(augment=augment, max_epochs=2).fit(X_TOY, Y_TOY)
    assert len(calls) == 2 * len(X_TOY)
    clf.predict_proba(X_TOY)
    assert len(calls) == 2 * len(X_TOY)


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(3)
    y_noise = rng.choice(["a", "b"], size=len(X_TOY))  # nothing to learn: valid loss rises
    clf = toy(unfreeze="all", freeze_epochs=0, lr=0.3, max_epochs=40, patience=2,
              validation_fraction=0.5).fit(X_TOY, y_noise)
    history = clf.net_.history
    assert len(history) < 40
    valid_ds = clf.net_.train_split.keywords["valid_ds"]
    proba = torch.from_numpy(clf.net_.predict_proba(valid_ds))
    targets = torch.tensor([valid_ds[i][1]["y"] for i in range(len(valid_ds))])
    loss = nn.functional.nll_loss(torch.log(proba), targets).item()
    assert loss == pytest.approx(min(history[:, "valid_loss"]), rel=1e-4)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"unfreeze": -1}, "'unfreeze' parameter .* range \\[0, inf\\) or a str among {'all'}"),
        ({"unfreeze": "some"}, "'unfreeze' parameter .* Got 'some'"),
        ({"lr_decay": 0}, r"'lr_decay' parameter .* range \(0.0, 1.0\] or None"),
        ({"lr_decay": 1.5}, "'lr_decay' parameter .* Got 1.5"),
        ({"freeze_epochs": -1}, "'freeze_epochs' parameter .* range \\[0, inf\\)"),
        ({"unfreeze": 1, "freeze_epochs": 3, "max_epochs": 3}, "leaves no epoch"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter .* Got 1.0"),
        ({"optimizer": "lion"}, "'optimizer' parameter .* Got 'lion'"),
        ({"precision": "float16"}, "float16.* needs loss scaling"),
        ({"num_workers": -1}, "'num_workers' parameter .* Got -1"),
    ],
)
def test_invalid_parameters_fail_at_fit(params, message):
    clf = toy(**params)
    with pytest.raises(ValueError, match=message):
        clf.fit(X_TOY, Y_TOY)


@pytest.mark.parametrize(
    "y, message",
    [
        (Y_TOY[:-1], "X has 24 images but y has 23 labels"),
        (np.array(["a"] * 24), "single class 'a'"),
        (np.array([None] + ["a", "b"] * 11 + ["a"], dtype=object), r"y\[0\] is missing"),
        (np.array([np.nan] + [0.0, 1.0] * 11 + [0.0]), r"y\[0\] is missing"),
        (np.zeros((24, 2, 2)), "y must be 1-D labels, a 2-D label indicator"),
        (np.full((24, 2), 2), r"y\[:, 0\] has 1 class\(es\)"),  # multi-output columns
        (np.stack([Y_TOY, np.full(24, None)], axis=1), r"y\[:, 1\] has 0 class"),
    ],
)
def test_bad_labels_fail_at_fit(y, message):
    with pytest.raises(ValueError, match=message):
        toy().fit(X_TOY, y)


def test_bad_images_rejected_like_the_extractor(tmp_path):
    with pytest.raises(ValueError, match=r"X\[1\] .*missing\.png.*file not found"):
        toy().fit([tmp_path, tmp_path / "missing.png"], ["a", "b"])


def test_grid_search_over_unfreeze_and_lr_decay_in_parallel():
    grid = GridSearchCV(toy(max_epochs=2, freeze_epochs=1),
                        {"unfreeze": [0, 2, "all"], "lr_decay": [0.1, 0.5]}, cv=2, n_jobs=2)
    grid.fit(X_TOY, Y_TOY)
    assert grid.best_params_["unfreeze"] in (0, 2, "all")
    assert len(grid.cv_results_["params"]) == 6
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.predict(X_TOY).shape == (24,)


# ------------------------------------------------------------------ transfer is real
def test_pretraining_on_a_source_task_helps_the_target_task():
    digits = load_digits()
    X = (digits.images / 16 * 255).astype(np.uint8)
    y = digits.target
    source, target = y < 5, y >= 5
    # networks trained from scratch here: BatchNorm statistics must be computed
    # ("frozen", the default for pretrained backbones, would keep the initial ones)
    common = dict(image_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                  batch_size=32, random_state=0, batchnorm="recalibrate")
    # Source task: digits 0-4, all of them, trained from scratch.
    pretrained = FineTuneClassifier(digits_cnn(), unfreeze="all", freeze_epochs=0, lr=3e-3,
                                    max_epochs=15, **common).fit(X[source], y[source])
    network = pretrained.net_.module_.body.net  # the learned body, head removed
    # Target task: digits 5-9, 3 labels per class; the rest is the test set.
    Xt, yt = X[target], y[target]
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.choice(np.flatnonzero(yt == c), 3, replace=False)
                            for c in range(5, 10)])
    test = np.setdiff1d(np.arange(len(yt)), train)
    # Ten steps in all: a constant rate (a one-cycle schedule spends too many of so few
    # steps warming up and cooling down, for both models alike).
    budget = dict(max_epochs=10, schedule="constant", **common)
    # Little data, similar domain: the head first, then every layer.
    fine_tuned = FineTuneClassifier(network, unfreeze="all", freeze_epochs=3, lr=3e-2,
                                    **budget).fit(Xt[train], yt[train])
    acc_ft = fine_tuned.score(Xt[test], yt[test])
    # From scratch: same architecture and budget, every layer trained at one learning rate
    # (the best of three). Its BatchNorm statistics are recalibrated as well: without
    # that, ten steps leave them at their initial values and the baseline looks far
    # worse than it is (0.34 instead of 0.75 here).
    acc_scratch = max(
        FineTuneClassifier(digits_cnn(seed=1), unfreeze="all", freeze_epochs=0, lr=lr,
                           lr_decay=1.0, **budget)
        .fit(Xt[train], yt[train]).score(Xt[test], yt[test])
        for lr in (3e-3, 1e-2, 3e-2)
    )
    print(f"target 5-9 with 3 labels/class: fine-tuned {acc_ft:.3f}, scratch {acc_scratch:.3f}")
    assert acc_ft > acc_scratch + 0.05


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_head_only_matches_frozen_features_with_real_weights(no_network):
    X_train, y_train = load_region_patches(5, seed=0)
    X_test, y_test = load_region_patches(20, seed=1)
    prep = dict(image_size=64, mean=LITE_MEAN, std=LITE_STD)
    frozen = make_pipeline(PretrainedFeatureExtractor(efficientnet_lite0(), **prep),
                           LogisticRegression(max_iter=3000)).fit(X_train, y_train)
    head_only = FineTuneClassifier(efficientnet_lite0(), unfreeze=0, lr=3e-3, max_epochs=60,
                                   batch_size=60, random_state=0, **prep).fit(X_train, y_train)
    short = FineTuneClassifier(efficientnet_lite0(), unfreeze=2, freeze_epochs=30, lr=3e-3,
                               max_epochs=33, batch_size=60, random_state=0,
                               **prep).fit(X_train, y_train)
    acc_frozen = frozen.score(X_test, y_test)
    acc_head, acc_short = head_only.score(X_test, y_test), short.score(X_test, y_test)
    print(f"frozen+LR {acc_frozen:.3f}, unfreeze=0 {acc_head:.3f}, unfreeze=2 {acc_short:.3f}")
    assert acc_head > acc_frozen - 0.08  # about the same: frozen BatchNorm did not drift
    assert acc_short > 0.4  # a short real fine-tune predicts sensibly (chance 0.083)
