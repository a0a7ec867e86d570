"""FineTuneRegressor: continuous targets, in the user's units, on the shared machinery."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from sktransfer import (
    FineTuneClassifier,
    FineTuneRegressor,
    PretrainedFeatureExtractor,
    export_model,
    import_model,
)

from ._helpers import X_TOY, digits_cnn, tiny_cnn

PREP = dict(image_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
Y_TOY = X_TOY.mean(axis=(1, 2, 3)) / 10 + np.arange(24) % 3  # learnable: brightness


def toy(model=None, **params) -> FineTuneRegressor:
    defaults = dict(image_size=16, resize_size=16, max_epochs=3, random_state=0, lr=1e-2)
    return FineTuneRegressor(model if model is not None else tiny_cnn(), **{**defaults,
                                                                              **params})


def _rotated_digits(indices, images, seed):
    rng = np.random.default_rng(seed)
    X, angles = [], []
    for i in indices:
        angle = rng.uniform(-60, 60)
        img = Image.fromarray(images[i]).resize((16, 16), Image.BILINEAR)
        X.append(np.asarray(img.rotate(angle, resample=Image.BILINEAR)))
        angles.append(angle)
    return np.stack(X), np.asarray(angles)


def test_regressor_beats_frozen_features_and_ridge_on_rotation_angles():
    """Real images: how far a handwritten digit is rotated, from -60 to 60 degrees.

    The backbone is pretrained on the digits 0-4 (classification); the task uses the
    digits 5-9. Frozen features + RidgeCV is the frozen-feature strategy for regression.
    """
    digits = load_digits()
    images, y = (digits.images / 16 * 255).astype(np.uint8), digits.target
    source = np.flatnonzero(y < 5)
    X_source = np.stack([np.asarray(Image.fromarray(images[i]).resize((16, 16),
                                                                      Image.BILINEAR))
                         for i in source])
    # trained from scratch: its BatchNorm statistics must be computed ("recalibrate")
    pretrained = FineTuneClassifier(digits_cnn(), unfreeze="all", freeze_epochs=0, lr=3e-3,
                                    max_epochs=6, random_state=0, batchnorm="recalibrate",
                                    **PREP)
    network = pretrained.fit(X_source, y[source]).net_.module_.body.net
    target = np.random.default_rng(0).permutation(np.flatnonzero(y >= 5))
    X_train, a_train = _rotated_digits(target[:300], images, 1)
    X_test, a_test = _rotated_digits(target[300:700], images, 2)
    ridge = make_pipeline(PretrainedFeatureExtractor(network, **PREP),
                          RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(X_train, a_train)
    reg = FineTuneRegressor(network, unfreeze="all", freeze_epochs=2, lr=1e-2, max_epochs=12,
                            random_state=0, batchnorm="recalibrate", **PREP)
    reg.fit(X_train, a_train)
    r2_ridge, r2_fine = ridge.score(X_test, a_test), reg.score(X_test, a_test)
    print(f"rotation angle R^2: fine-tuned {r2_fine:.3f}, frozen features + Ridge "
          f"{r2_ridge:.3f}")
    assert r2_fine > r2_ridge + 0.05
    assert np.abs(reg.predict(X_test) - a_test).mean() < 20  # degrees


def test_targets_are_standardised_inside_and_returned_in_user_units():
    base = toy().fit(X_TOY, Y_TOY)
    scaled = toy().fit(X_TOY, Y_TOY * 1000 - 7)
    # the network sees the same standardised targets: the same model up to units
    np.testing.assert_allclose(scaled.predict(X_TOY), base.predict(X_TOY) * 1000 - 7,
                               rtol=1e-4, atol=1e-2)
    assert base.y_mean_ == pytest.approx([Y_TOY.mean()])
    assert base.y_scale_ == pytest.approx([Y_TOY.std()])
    assert base.predict(X_TOY).shape == (24,) and base.predict(X_TOY).dtype == np.float64


def test_two_d_targets_names_score_and_huber():
    Y = pd.DataFrame({"bright": Y_TOY, "const": np.full(24, 3.0)})
    reg = toy(loss="huber", max_epochs=10).fit(X_TOY, Y)
    pred = reg.predict(X_TOY)
    assert pred.shape == (24, 2) and reg.n_targets_ == 2
    assert list(reg.target_names_) == ["bright", "const"]
    assert reg.y_scale_[1] == 1.0  # a constant column: scale 1, not a division by 0
    np.testing.assert_allclose(pred[:, 1], 3.0, atol=0.1)
    assert reg.net_.criterion_.kind == "huber"
    assert reg.score(X_TOY, Y) == pytest.approx(r2_score(Y, pred))
    scores = cross_val_score(toy(max_epochs=2), X_TOY, Y_TOY, cv=2)
    assert np.all(np.isfinite(scores))


def test_regressor_round_trips_through_joblib_and_export(tmp_path):
    reg = toy(unfreeze=1, tta=True).fit(X_TOY, Y_TOY)
    before = reg.predict(X_TOY)
    joblib.dump(reg, tmp_path / "r.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "r.joblib").predict(X_TOY), before)
    export_model(reg, tmp_path / "r.safetensors")
    loaded = import_model(tmp_path / "r.safetensors", model=tiny_cnn())
    assert isinstance(loaded, FineTuneRegressor)
    np.testing.assert_array_equal(loaded.predict(X_TOY), before)


def test_regressor_checkpoint_resumes_and_finished_fit_returns(tmp_path):
    first = toy(max_epochs=3, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    again = toy(max_epochs=3, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    np.testing.assert_array_equal(again.predict(X_TOY), first.predict(X_TOY))
    assert len(list(tmp_path.iterdir())) == 1
    # a classifier on the same images has a checkpoint of its own
    FineTuneClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=1,
                       checkpoint=tmp_path).fit(X_TOY, (Y_TOY > Y_TOY.mean()).astype(int))
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    "y, message",
    [
        (Y_TOY[:-1], "X has 24 images but y has 23 targets"),
        (np.r_[Y_TOY[:3], np.nan, Y_TOY[4:]], r"y\[3\] is nan; targets must be finite"),
        (np.array(["a"] * 24), "y must hold numbers"),
        (np.zeros((24, 2, 2)), "y must be 1-D or 2-D"),
        (None, "FineTuneRegressor needs targets y"),
    ],
)
def test_bad_targets_fail_at_fit(y, message):
    with pytest.raises(ValueError, match=message):
        toy().fit(X_TOY, y)


def test_bad_loss_fails_at_fit():
    with pytest.raises(ValueError, match="'loss' parameter of FineTuneRegressor"):
        toy(loss="l1").fit(X_TOY, Y_TOY)


def test_regressor_lr_finder_and_tta_share_the_classifier_machinery():
    reg = toy(lr="auto", unfreeze=1, max_epochs=2).fit(X_TOY, Y_TOY)
    assert reg.lr_ == reg.lr_find_.suggestion > 0
    plain = reg.predict(X_TOY)
    mirrored = reg.predict(X_TOY[:, :, ::-1])
    reg.set_params(tta=True)
    np.testing.assert_allclose(reg.predict(X_TOY), (plain + mirrored) / 2, rtol=1e-5,
                               atol=1e-6)
