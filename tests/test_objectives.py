"""What the loss sees: sample and class weights, label smoothing, multi-label targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import f1_score
from sklearn.model_selection import cross_val_score
from sklearn.utils.class_weight import compute_sample_weight
from torch.nn import functional as F

from sktransfer import FineTuneClassifier
from sktransfer._losses import WeightedLoss

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy

# what these check depends on precision="auto"'s path: make test reruns them with the
# CPU's bf16 answer flipped (pytest -m precision --native-bf16=flip)
pytestmark = pytest.mark.precision


def test_weighted_loss_equals_the_loss_of_duplicated_examples():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    w = torch.tensor([2.0, 1.0, 0.0, 3.0])
    weighted = WeightedLoss()(logits, {"y": y, "w": w})
    repeat = torch.repeat_interleave(torch.arange(4), w.long())
    duplicated = F.cross_entropy(logits[repeat], y[repeat])
    assert weighted.item() == pytest.approx(duplicated.item(), rel=1e-6)


def test_label_smoothing_reaches_the_loss():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    ones = torch.ones(5)
    got = WeightedLoss(label_smoothing=0.2)(logits, {"y": y, "w": ones})
    assert got.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.2).item())
    clf = toy(label_smoothing=0.2, max_epochs=1).fit(X_TOY, Y_TOY)
    assert clf.net_.criterion_.label_smoothing == 0.2


def _head_only(**params):
    # Head only, one full batch per epoch: the gradient is the weighted mean over the
    # whole data set, so weights and duplicates must give the same model. float32
    # arithmetic, checked to 1e-5 (and bf16's, to its own tolerance: see the test).
    return toy(unfreeze=0, batch_size=64, max_epochs=4, lr=0.05, schedule="constant",
               **{"precision": "float32", **params})


@pytest.mark.parametrize("precision, tolerance", [
    ("float32", 2e-5),
    # bf16 rounds the weighted gradient's terms once (w * g) and the duplicated ones w
    # times (g each): 4 steps, each term rounded twice (the gradient, the matmul input),
    # softmax at most half the logits' change, logits O(1): k = 8 roundings of 2^-8,
    # scale 0.5 (measured 3.1e-4)
    ("bfloat16", 8 * 2.0 ** -8 * 0.5),
])
def test_sample_weight_fit_matches_a_fit_on_duplicated_images(precision, tolerance):
    weights = np.tile([1, 2, 3], 8)
    repeat = np.repeat(np.arange(len(X_TOY)), weights)
    weighted = _head_only(precision=precision).fit(X_TOY, Y_TOY, sample_weight=weights)
    duplicated = _head_only(precision=precision).fit(X_TOY[repeat], Y_TOY[repeat])
    unweighted = _head_only(precision=precision).fit(X_TOY, Y_TOY)
    assert weighted.precision_ == duplicated.precision_ == precision
    p_w, p_d = weighted.predict_proba(X_TOY), duplicated.predict_proba(X_TOY)
    np.testing.assert_allclose(p_w, p_d, rtol=0, atol=tolerance)
    # the weights mattered, far beyond the tolerance
    assert np.abs(p_w - unweighted.predict_proba(X_TOY)).max() > max(1e-3, 4 * tolerance)


def test_class_weight_balanced_is_sklearns_and_combines_with_sample_weight():
    y = np.array(["cat"] * 16 + ["dog"] * 4 + ["emu"] * 4)
    sw = np.linspace(0.5, 2, len(y))
    by_class = _head_only(class_weight="balanced").fit(X_TOY, y, sample_weight=sw)
    by_sample = _head_only().fit(X_TOY, y,
                                 sample_weight=sw * compute_sample_weight("balanced", y))
    np.testing.assert_allclose(by_class.predict_proba(X_TOY), by_sample.predict_proba(X_TOY),
                               atol=1e-6)
    as_dict = _head_only(class_weight={"dog": 4.0, "emu": 4.0}).fit(X_TOY, y)
    by_dict = _head_only().fit(X_TOY, y, sample_weight=np.where(y == "cat", 1.0, 4.0))
    np.testing.assert_allclose(as_dict.predict_proba(X_TOY), by_dict.predict_proba(X_TOY),
                               atol=1e-6)


@pytest.mark.parametrize(
    "params, sample_weight, message",
    [
        ({}, np.ones(5), r"sample_weight must have shape \(24,\)"),
        ({}, np.r_[np.ones(23), -1.0], r"sample_weight\[23\] is -1.0"),
        ({}, np.r_[np.nan, np.ones(23)], r"sample_weight\[0\] is nan"),
        ({}, np.zeros(24), "sum to 0"),
        ({"class_weight": "auto"}, None, "'class_weight' parameter"),
        ({"class_weight": {"zebra": 2.0}}, None, "zebra"),
        ({"label_smoothing": 1.0}, None, r"'label_smoothing' parameter .* range \[0.0, 1.0\)"),
    ],
)
def test_bad_weights_are_clear_errors(params, sample_weight, message):
    with pytest.raises(ValueError, match=message):
        toy(**params).fit(X_TOY, Y_TOY, sample_weight=sample_weight)


# --------------------------------------------------------------------------- multi-label
def digit_labels():
    """Real images, three overlapping labels: even, >= 5, drawn with a closed loop."""
    digits = load_digits()
    X = (digits.images / 16 * 255).astype(np.uint8)
    d = digits.target
    Y = np.stack([d % 2 == 0, d >= 5, np.isin(d, [0, 6, 8, 9])], axis=1).astype(int)
    return X, Y


def test_multilabel_fit_predict_and_cross_validation():
    X, Y = digit_labels()
    rng = np.random.default_rng(0)
    train = rng.choice(len(X), 400, replace=False)
    test = np.setdiff1d(np.arange(len(X)), train)[:400]
    params = dict(image_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                  unfreeze="all", freeze_epochs=0, lr=1e-2, max_epochs=12, random_state=0,
                  batchnorm="recalibrate")  # from scratch: statistics must be computed
    clf = FineTuneClassifier(tiny_cnn(n_classes=3), **params).fit(X[train], Y[train])
    assert clf.multilabel_ and list(clf.classes_) == [0, 1, 2]
    proba = clf.predict_proba(X[test])
    assert proba.shape == (len(test), 3) and proba.min() >= 0 and proba.max() <= 1
    assert not np.allclose(proba.sum(axis=1), 1)  # independent sigmoids, not a softmax
    pred = clf.predict(X[test])
    assert pred.shape == (len(test), 3) and set(np.unique(pred)) <= {0, 1}
    assert isinstance(clf.net_.criterion_, WeightedLoss) and clf.net_.criterion_.kind == "bce"
    f1 = f1_score(Y[test], pred, average="macro")
    # chance: predicting each label from its frequency alone
    chance = f1_score(Y[test], (rng.random(Y[test].shape) < Y[train].mean(0)).astype(int),
                      average="macro")
    print(f"multi-label macro F1 {f1:.3f}, chance {chance:.3f}")
    assert f1 > chance + 0.2
    scores = cross_val_score(FineTuneClassifier(tiny_cnn(n_classes=3),
                                                **{**params, "max_epochs": 2}),
                             X[train[:120]], Y[train[:120]], cv=2, scoring="f1_macro")
    assert scores.shape == (2,) and np.all(np.isfinite(scores))


def test_multilabel_refuses_class_weight_and_non_binary_indicators():
    Y = np.stack([np.arange(24) % 2, np.arange(24) % 3 == 0], axis=1).astype(int)
    with pytest.raises(ValueError, match="class_weight applies to single-label y"):
        toy(class_weight="balanced").fit(X_TOY, Y)
    # not 0/1: a multi-output y (one task per column), whose labels cannot be fractions
    with pytest.raises(ValueError, match=r"y\[:, 0\] holds continuous values \(e.g. 0.5\)"):
        toy().fit(X_TOY, np.full((24, 2), 0.5))
