"""Test-time augmentation and the learning-rate finder."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sktransfer import FineTuneClassifier, LRFindResult
from sktransfer._lr_finder import valley

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy

X_WIDE = np.random.default_rng(1).integers(0, 256, size=(6, 20, 28, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- TTA
def test_tta_averages_the_image_and_its_mirror():
    clf = toy(max_epochs=3).fit(X_TOY, Y_TOY)
    plain = clf.predict_proba(X_TOY)
    mirrored = clf.predict_proba(X_TOY[:, :, ::-1])
    clf.set_params(tta=True)
    np.testing.assert_allclose(clf.predict_proba(X_TOY), (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, mirrored)  # the mirror really is another view
    clf.set_params(tta=1)
    np.testing.assert_allclose(clf.predict_proba(X_TOY), (plain + mirrored) / 2, atol=1e-6)


def test_tta_crops_are_the_centre_then_the_corners():
    # images 20 x 28, resized so the short side is 16 (16 x 22), crops of 12 x 12
    clf = toy(image_size=12, resize_size=16, max_epochs=2).fit(X_WIDE, ["a", "b"] * 3)
    resized = torch.nn.functional.interpolate(  # what the preprocessing resize gives
        torch.from_numpy(X_WIDE).permute(0, 3, 1, 2).float(), size=(16, 22),
        mode="bilinear", antialias=True, align_corners=False)
    resized = resized.round().clamp(0, 255).to(torch.uint8)
    crops = [resized[:, :, 2:14, 5:17], resized[:, :, :12, :12]]  # centre, top-left corner
    views = [c for crop in crops for c in (crop, crop.flip(-1))]
    expected = np.mean([clf.predict_proba(v.permute(0, 2, 3, 1).numpy()) for v in views],
                       axis=0)
    clf.set_params(tta=2)
    np.testing.assert_allclose(clf.predict_proba(X_WIDE), expected, atol=2e-2)


def test_tta_is_never_used_in_fit():
    seen = []

    class Spy(Callback):
        def on_batch_begin(self, net, batch=None, **kwargs):
            seen.append(tuple(batch[0].shape))

    a = toy(tta=3, max_epochs=2, validation_fraction=0.25, callbacks=[Spy()]).fit(X_TOY, Y_TOY)
    b = toy(tta=False, max_epochs=2, validation_fraction=0.25).fit(X_TOY, Y_TOY)
    assert all(len(shape) == 4 for shape in seen)  # no stacked views in training/validation
    a.set_params(tta=False)
    np.testing.assert_array_equal(a.predict_proba(X_TOY), b.predict_proba(X_TOY))


@pytest.mark.parametrize("tta", [0.5, 10, -1, "flip"])
def test_bad_tta_is_a_clear_error(tta):
    with pytest.raises(ValueError, match="'tta' parameter .* range \\[1, 9\\]"):
        toy(tta=tta).fit(X_TOY, Y_TOY)


# --------------------------------------------------------------------------- LR finder
def _rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002


def test_lr_find_leaves_the_estimator_and_the_global_rngs_untouched():
    model = tiny_cnn()
    clf = toy(model, unfreeze=1, augment=True)
    params = clf.get_params()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch_state, np_state, py_state = _rng_states()
    result = clf.lr_find(X_TOY, Y_TOY, num_steps=30, end_lr=100.0)
    after = _rng_states()
    assert torch.equal(after[0], torch_state) and np.array_equal(after[1], np_state)
    assert after[2] == py_state
    assert not hasattr(clf, "net_")  # still unfitted
    assert clf.get_params().keys() == params.keys()
    assert all(clf.get_params()[k] is params[k] for k in params)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert isinstance(result, LRFindResult)
    assert np.all(np.diff(result.lrs) > 0) and result.lrs[0] == pytest.approx(1e-7)
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) <= 30
    assert result.suggestion == pytest.approx(result.lrs[np.argmin(result.losses)] / 10)
    assert result.rule == "minimum/10" and result.lrs[0] <= result.valley <= result.lrs[-1]
    # the same call gives the same curve (seeded by random_state)
    again = clf.lr_find(X_TOY, Y_TOY, num_steps=30, end_lr=100.0)
    np.testing.assert_array_equal(again.raw_losses, result.raw_losses)


def test_lr_find_stops_when_the_loss_diverges_and_plots():
    result = toy(unfreeze="all").lr_find(X_TOY, Y_TOY, start_lr=1e-3, end_lr=1e6,
                                         num_steps=200)
    assert len(result.lrs) < 200  # stopped early
    import matplotlib

    matplotlib.use("Agg")
    ax = result.plot()
    assert ax.get_xscale() == "log" and len(ax.lines) == 2


def test_lr_auto_fits_with_the_suggested_rate():
    auto = toy(lr="auto", unfreeze=1, max_epochs=2).fit(X_TOY, Y_TOY)
    assert isinstance(auto.lr_find_, LRFindResult)
    assert auto.lr_ == auto.lr_find_.suggestion
    assert auto.summary()[-1]["lr"] == auto.lr_
    fixed = toy(lr=auto.lr_, unfreeze=1, max_epochs=2).fit(X_TOY, Y_TOY)
    np.testing.assert_array_equal(auto.predict_proba(X_TOY), fixed.predict_proba(X_TOY))
    assert fixed.lr_find_ is None


def test_valley_picks_the_middle_of_the_longest_descent():
    losses = np.array([5, 5.1, 5, 4, 3, 2, 1, 0.5, 0.4, 2, 8, 20.0])
    idx = valley(losses)
    assert 3 <= idx <= 7  # inside the descent, before its bottom
    assert valley(np.array([1.0, 2.0])) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 1.0, "end_lr": 0.1}, "need 0 < start_lr < end_lr"),
    ({"num_steps": 1}, "num_steps must be an integer"),
])
def test_lr_find_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(tiny_cnn()).lr_find(X_TOY, Y_TOY, **kwargs)
