"""Calibrated probabilities and reject labels of the fine-tuning classifiers."""

from __future__ import annotations

import copy
import pickle

import joblib
import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from sktransfer import FineTuneClassifier, export_model, import_model
from sktransfer._calibration import (
    T_RANGE,
    calibrate,
    fit_temperature,
    negative_log_likelihood,
)

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy


def toy_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images drawn as X_TOY's are (noise; cats darker, emus half white)."""
    X = np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    y = np.array(["cat", "dog", "emu"] * (n // 3))
    X[y == "cat"] //= 3
    X[y == "emu", :, :8] = 255
    return X, y


# Larger than X_TOY so that a validation split holds a few images of every class.
X_CAL, Y_CAL = toy_images(48, 1)
X_NEW, Y_NEW = toy_images(90, 2)  # more of the same kind of images
# Unlike any training image: flat colours and a checkerboard.
NOVEL = np.stack([np.full((16, 16, 3), v, dtype=np.uint8) for v in
                  ((128, 128, 128), (255, 0, 0), (0, 200, 255))]
                 + [np.kron((np.indices((4, 4)).sum(0) % 2) * 255,
                            np.ones((4, 4)))[..., None].repeat(3, -1).astype(np.uint8)])


def calibrated_toy(**params) -> FineTuneClassifier:
    """A toy classifier that overfits its training half (so the temperature matters)."""
    return toy(**{"validation_fraction": 0.5, "max_epochs": 8, "batch_size": 8,
                  "batchnorm": "recalibrate", **params})


@pytest.fixture(scope="module")
def calibrated() -> FineTuneClassifier:
    return calibrated_toy().fit(X_CAL, Y_CAL)


@pytest.fixture(scope="module")
def rejecting() -> FineTuneClassifier:
    return toy(reject_label="unknown", max_epochs=4, batchnorm="recalibrate").fit(X_CAL, Y_CAL)


# ------------------------------------------------------------------ temperature
def test_fit_temperature_recovers_the_temperature_of_overconfident_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 4)) * 2
    y = np.array([rng.choice(4, p=p) for p in softmax(z, axis=1)])  # calibrated at T=1
    T = fit_temperature(3 * z, y)  # three times too confident
    assert T == pytest.approx(3, rel=0.1)
    assert negative_log_likelihood(3 * z, y, temperature=T) < negative_log_likelihood(3 * z, y)
    # multi-label: the same with sigmoids
    t = (rng.random(z.shape) < expit(z)).astype(float)
    assert fit_temperature(0.5 * z, t, multilabel=True) == pytest.approx(0.5, rel=0.1)


def test_a_flawless_small_validation_set_does_not_drive_the_temperature_to_zero():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    z = rng.normal(size=(40, 4)) * 0.5
    z[np.arange(40), y] += 2  # every image right, with margins
    plain = fit_temperature(z, y, smoothing=0.0)  # NLL falls all the way to T -> 0
    assert plain == pytest.approx(T_RANGE[0], rel=0.01)
    T = fit_temperature(z, y, smoothing=None)  # Laplace: 40 right of 40 is not certainty
    confidence = softmax(z / T, axis=1).max(axis=1).mean()
    assert T > 5 * plain and 0.9 < confidence < 1 - 1 / 84


def test_fit_temperature_never_makes_the_held_out_nll_worse():
    z = np.zeros((10, 3))  # constant logits: no temperature helps
    assert fit_temperature(z, np.arange(10) % 3) == 1.0


def test_temperature_lowers_the_validation_nll_and_never_changes_predict(calibrated):
    clf = calibrated
    assert clf.temperature_ != 1.0
    # the validation rows fit held out (same seed, same split)
    encoded = np.searchsorted(clf.classes_, Y_CAL)
    _, valid = clf._split(encoded, 0)
    logits = clf.decision_function(X_CAL[valid]) * clf.temperature_
    assert negative_log_likelihood(logits, encoded[valid], temperature=clf.temperature_) < \
        negative_log_likelihood(logits, encoded[valid])
    plain = calibrated_toy(calibration=None).fit(X_CAL, Y_CAL)
    assert plain.temperature_ == 1.0
    np.testing.assert_array_equal(plain.predict(X_CAL), clf.predict(X_CAL))
    p, q = plain.predict_proba(X_CAL), clf.predict_proba(X_CAL)
    assert not np.allclose(p, q)
    np.testing.assert_allclose(q, softmax(np.log(p) / clf.temperature_, axis=1), atol=1e-5)


def test_calibration_never_changes_predict_with_test_time_augmentation(calibrated):
    clf = copy.deepcopy(calibrated).set_params(tta=2)
    proba = clf.predict_proba(X_CAL)
    uncalibrated = calibrate(proba, 1 / clf.temperature_)  # undo: p ** T renormalised
    np.testing.assert_array_equal(clf.predict(X_CAL),
                                  clf.classes_[uncalibrated.argmax(axis=1)])
    np.testing.assert_array_equal(proba.argmax(1), uncalibrated.argmax(1))


def test_auto_calibrates_only_with_a_validation_split():
    clf = toy().fit(X_TOY, Y_TOY)  # validation_fraction=0: nothing held out
    assert clf.temperature_ == 1.0
    with pytest.raises(ValueError, match="calibration='temperature' .*validation_fraction"):
        toy(calibration="temperature").fit(X_TOY, Y_TOY)


def test_decision_function_gives_the_logits_of_predict_proba(calibrated):
    scores = calibrated.decision_function(X_CAL)
    assert scores.shape == (len(X_CAL), 3) and scores.dtype == np.float32
    np.testing.assert_allclose(softmax(scores, axis=1), calibrated.predict_proba(X_CAL),
                               atol=1e-5)
    binary = toy(max_epochs=2).fit(X_TOY[Y_TOY != "emu"], Y_TOY[Y_TOY != "emu"])
    margin = binary.decision_function(X_TOY)
    assert margin.shape == (len(X_TOY),)
    np.testing.assert_allclose(expit(margin), binary.predict_proba(X_TOY)[:, 1], atol=1e-5)
    np.testing.assert_array_equal(binary.classes_[(margin > 0).astype(int)],
                                  binary.predict(X_TOY))


def test_decision_function_of_a_multilabel_classifier_is_one_logit_per_label():
    Y = np.stack([Y_TOY == "cat", Y_TOY != "dog"], axis=1).astype(int)
    clf = toy(max_epochs=2, validation_fraction=0.5).fit(X_TOY, Y)
    scores = clf.decision_function(X_TOY)
    assert scores.shape == (len(X_TOY), 2)
    np.testing.assert_allclose(expit(scores), clf.predict_proba(X_TOY), atol=1e-5)


def test_calibrated_classifier_cv_calibrates_a_frozen_fine_tuned_classifier():
    clf = toy(max_epochs=3).fit(X_CAL[:24], Y_CAL[:24])
    cal = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
    cal.fit(X_CAL[24:], Y_CAL[24:])
    proba = cal.predict_proba(X_CAL[24:])
    assert proba.shape == (24, 3)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(cal.predict(X_CAL[24:]), clf.predict(X_CAL[24:]))
    # the same temperature as the built-in one fitted on these images' logits
    T = fit_temperature(clf.decision_function(X_CAL[24:]),
                        np.searchsorted(clf.classes_, Y_CAL[24:]))
    ours = calibrate(clf.predict_proba(X_CAL[24:]), T)
    np.testing.assert_allclose(proba, ours, atol=2e-3)


# ------------------------------------------------------------------ reject labels
@pytest.mark.parametrize("novelty", ["mahalanobis", "knn"])
def test_reject_label_marks_images_unlike_the_training_set(novelty):
    clf = toy(reject_label=-1, novelty=novelty, max_epochs=4, batchnorm="recalibrate")
    y = np.searchsorted(["cat", "dog", "emu"], Y_CAL)
    clf.fit(X_CAL, y)
    train = clf.predict(X_CAL)
    assert np.mean(train != -1) >= 0.9
    # keep_rate=0.95 of images like the training images (fewer: a small sample)
    assert np.mean(clf.predict(X_NEW) != -1) >= 0.8
    assert set(np.unique(train)) <= {-1, 0, 1, 2}
    assert clf.classes_.tolist() == [0, 1, 2]  # the reject label is not a class
    novel = clf.predict(NOVEL)
    assert (novel == -1).all()
    scores = clf.typicality(np.concatenate([X_CAL, NOVEL]))
    np.testing.assert_array_equal(scores[: len(X_CAL)] < 0, train == -1)
    assert scores[len(X_CAL):].max() < np.quantile(scores[: len(X_CAL)], 0.05)
    # predict_proba is not touched by rejection
    assert clf.predict_proba(NOVEL).shape == (len(NOVEL), 3)


def test_energy_rejects_the_lowest_logsumexp_of_the_logits():
    clf = toy(reject_label="unknown", novelty="energy", max_epochs=4,
              batchnorm="recalibrate").fit(X_CAL, Y_CAL)
    X = np.concatenate([X_CAL, X_NEW, NOVEL])
    energy = logsumexp(clf.decision_function(X) * clf.temperature_, axis=1)
    typicality = clf.typicality(X)
    np.testing.assert_allclose(typicality - energy, typicality[0] - energy[0], atol=1e-4)
    # the threshold keeps keep_rate of the training images (in-sample for energy)
    assert np.mean(typicality[: len(X_CAL)] >= 0) == pytest.approx(0.95, abs=1 / 48)
    np.testing.assert_array_equal(clf.predict(X) == "unknown", typicality < 0)


def test_keep_rate_sets_the_share_of_images_kept(rejecting):
    # the threshold is set on held-out scores of the training images: new images like
    # them are kept at about keep_rate (the training images themselves, at least)
    assert np.mean(rejecting.typicality(X_NEW) >= 0) == pytest.approx(0.95, abs=0.05)
    assert np.mean(rejecting.typicality(X_CAL) >= 0) >= 0.95
    everything = toy(reject_label="unknown", keep_rate=1.0, max_epochs=4,
                     batchnorm="recalibrate").fit(X_CAL, Y_CAL)
    assert (everything.predict(X_CAL) != "unknown").all()


def test_a_string_reject_label_is_returned_whole(rejecting):
    labels = rejecting.predict(np.concatenate([X_CAL, NOVEL]))
    assert labels.dtype.kind == "U" and "unknown" in labels.tolist()  # not truncated to 'unk'
    assert rejecting.score(NOVEL, ["cat"] * len(NOVEL)) < 0.5  # rejected counts as an error


@pytest.mark.parametrize("fmt", ["joblib", "safetensors"])
def test_reject_labels_and_temperature_survive_saving(rejecting, calibrated, fmt, tmp_path):
    for i, clf in enumerate([rejecting, calibrated]):
        path = tmp_path / f"m{i}.{fmt}"
        if fmt == "joblib":
            joblib.dump(clf, path)
            back = joblib.load(path)
        else:
            export_model(clf, path)
            back = import_model(path, model=tiny_cnn())
        X = np.concatenate([X_CAL, NOVEL])
        np.testing.assert_array_equal(back.predict(X), clf.predict(X))
        np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), atol=1e-6)
        assert back.temperature_ == clf.temperature_
        if clf.reject_label is not None:
            np.testing.assert_allclose(back.typicality(X), clf.typicality(X), atol=1e-6)


@pytest.mark.parametrize("params, y, match", [
    ({"reject_label": "cat"}, Y_TOY, "one of the classes"),
    ({"reject_label": -1}, Y_TOY, "not of the kind"),
    ({"reject_label": "none"}, np.arange(24) % 3, "not of the kind"),
    ({"reject_label": -1.5}, np.arange(24) % 3, "not an integer"),
    ({"reject_label": -1}, np.eye(3, dtype=int)[np.arange(24) % 3], "single-label"),
    ({"reject_label": -1}, np.arange(24) % 2 == 0, "boolean labels"),
])
def test_reject_label_errors_name_the_problem(params, y, match):
    with pytest.raises(ValueError, match=match):
        toy(max_epochs=1, **params).fit(X_TOY, y)


def test_reject_label_set_after_fit_asks_for_a_refit():
    clf = toy(max_epochs=1).fit(X_TOY, Y_TOY)
    clf.set_params(reject_label="unknown")
    with pytest.raises(ValueError, match="after fit.*refit"):
        clf.predict(X_TOY)
    with pytest.raises(ValueError, match="reject_label"):
        clf.set_params(reject_label=None).typicality(X_TOY)


def test_settings_changed_after_fit_are_refused_or_honoured(rejecting, calibrated):
    clf = copy.deepcopy(rejecting)
    for change, match in [({"keep_rate": 0.5}, "keep_rate=0.5 changed after fit"),
                          ({"novelty": "energy"}, "novelty='energy' changed after fit"),
                          ({"reject_label": "cat"}, "one of the classes"),
                          ({"reject_label": -1}, "not of the kind")]:
        clf.set_params(**change)
        with pytest.raises(ValueError, match=match):
            clf.predict(NOVEL)
        clf.set_params(**rejecting.get_params())
    np.testing.assert_array_equal(clf.predict(NOVEL), rejecting.predict(NOVEL))
    # calibration=None switches the fitted temperature off, as its documentation says
    plain = copy.deepcopy(calibrated).set_params(calibration=None)
    np.testing.assert_allclose(softmax(plain.decision_function(X_CAL), axis=1),
                               plain.predict_proba(X_CAL), atol=1e-5)
    np.testing.assert_allclose(plain.decision_function(X_CAL) / calibrated.temperature_,
                               calibrated.decision_function(X_CAL), rtol=1e-5, atol=1e-6)


def test_typicality_takes_dask_collections(rejecting):
    import dask
    import dask.array as da

    lazy = rejecting.typicality(da.from_array(X_CAL, chunks=16))
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float64
    with dask.config.set(scheduler="sync"):
        np.testing.assert_allclose(lazy.compute(), rejecting.typicality(X_CAL), rtol=1e-6)


def test_domain_adaptation_rejects_by_the_images_it_adapted_to():
    from sktransfer import DomainAdaptationClassifier

    source, y = toy_images(48, 3)
    target = (source // 2 + 100).astype(np.uint8)  # washed out: another domain
    clf = DomainAdaptationClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=3,
                                     random_state=0, lr=1e-2, reject_label="unknown",
                                     guard=False, batchnorm="recalibrate")
    clf.fit(source, y, X_target=target)
    assert clf.temperature_ == 1.0  # no calibration by default: the target is shifted
    # the threshold counts the target images (with the classes the network gives them)
    assert np.mean(clf.predict(target) == "unknown") <= 0.2
    assert np.mean(clf.predict(NOVEL) == "unknown") >= 0.75


def test_models_pickled_before_calibration_existed_predict_as_before(calibrated):
    state = dict(calibrated.__getstate__())  # a copy: the fixture stays whole
    for key in ("calibration", "reject_label", "novelty", "keep_rate", "temperature_",
                "_rejector"):
        state.pop(key, None)
    old = FineTuneClassifier.__new__(FineTuneClassifier)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.temperature_ == 1.0 and old.reject_label is None
    assert old.predict(X_CAL).tolist() == calibrated.predict(X_CAL).tolist()


# ------------------------------------------------------------------ deployment
def test_onnx_carries_the_temperature_and_refuses_reject_labels(rejecting, tmp_path):
    from sktransfer import OnnxModel, export_onnx

    calibrated = calibrated_toy(precision="float32").fit(X_CAL, Y_CAL)  # as ONNX computes
    assert calibrated.temperature_ != 1.0
    path = export_onnx(calibrated, tmp_path / "cal.onnx")
    onnx = OnnxModel(path)
    np.testing.assert_allclose(onnx.predict_proba(X_CAL), calibrated.predict_proba(X_CAL),
                               atol=1e-4)
    np.testing.assert_array_equal(onnx.predict(X_CAL), calibrated.predict(X_CAL))
    with pytest.raises(ValueError, match="reject_label='unknown'.*set_params"):
        export_onnx(rejecting, tmp_path / "rej.onnx")
