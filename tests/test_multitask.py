"""Several tasks on one backbone: multiclass-multioutput ``y`` on FineTuneClassifier."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from sktransfer import export_model, import_model

from ._helpers import tiny_cnn, toy


def two_tasks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images with two independent tasks: brightness (3 levels, ints) and which
    half holds a white bar (strings)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 120, size=(n, 16, 16, 3), dtype=np.uint8)
    level = rng.integers(0, 3, size=n)
    X = (X + 60 * level[:, None, None, None]).astype(np.uint8)
    side = rng.choice(["left", "right"], size=n)
    X[side == "left", :, :3] = 255
    X[side == "right", :, -3:] = 255
    return X, np.stack([level.astype(object), side.astype(object)], axis=1)


X_MT, Y_MT = two_tasks(60, 0)
X_NEW, Y_NEW = two_tasks(60, 1)


@pytest.fixture(scope="module")
def multi():
    return toy(tiny_cnn(5), max_epochs=12, batch_size=10, batchnorm="recalibrate",
               unfreeze="all", freeze_epochs=0).fit(X_MT, Y_MT)


def test_one_head_per_column_predicts_both_tasks(multi):
    assert multi.multioutput_ and not multi.multilabel_
    assert [c.tolist() for c in multi.classes_] == [[0, 1, 2], ["left", "right"]]
    assert multi.net_.module_.head.out_features == 5  # 3 + 2 outputs on one backbone
    pred = multi.predict(X_NEW)
    assert pred.shape == (60, 2) and pred.dtype == object
    proba = multi.predict_proba(X_NEW)
    assert [p.shape for p in proba] == [(60, 3), (60, 2)]
    for p in proba:
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    for j, (c, p) in enumerate(zip(multi.classes_, proba, strict=True)):
        np.testing.assert_array_equal(pred[:, j], c[p.argmax(1)])
    accuracies = [accuracy_score(Y_NEW[:, j].tolist(), pred[:, j].tolist()) for j in (0, 1)]
    assert min(accuracies) > 0.6  # both tasks learned (chance: 0.33 and 0.5)
    assert multi.score(X_NEW, Y_NEW) == pytest.approx(np.mean(accuracies))
    logits = multi.decision_function(X_NEW)
    assert [z.shape for z in logits] == [(60, 3), (60, 2)]


def test_a_missing_label_skips_only_its_column():
    y = Y_MT.copy()
    y[:30, 1] = None  # the side unknown for half the images
    clf = toy(tiny_cnn(5), max_epochs=2, batch_size=10).fit(X_MT, y)
    assert [c.tolist() for c in clf.classes_] == [[0, 1, 2], ["left", "right"]]
    # a missing label scores only the other column
    assert clf.score(X_MT[:30], y[:30]) == pytest.approx(
        accuracy_score(y[:30, 0].tolist(), clf.predict(X_MT[:30])[:, 0].tolist()))


def test_task_weights_change_what_trains():
    base = dict(max_epochs=2, batch_size=10, random_state=0)
    even = toy(tiny_cnn(5), **base).fit(X_MT, Y_MT)
    first = toy(tiny_cnn(5), task_weights=[1.0, 0.0], **base).fit(X_MT, Y_MT)
    # with no weight on the second task its head never moves from its initial weights
    head_even, head_first = even.net_.module_.head, first.net_.module_.head
    assert not np.allclose(head_even.weight[3:].detach(), head_first.weight[3:].detach())
    fresh = toy(tiny_cnn(5), task_weights=[1.0, 0.0], **{**base, "max_epochs": 1})
    fresh.fit(X_MT, Y_MT)
    assert np.allclose(fresh.net_.module_.head.weight[3:].detach(),
                       head_first.weight[3:].detach())


@pytest.mark.parametrize("fmt", ["joblib", "safetensors"])
def test_multi_output_models_round_trip(multi, fmt, tmp_path):
    path = tmp_path / f"m.{fmt}"
    if fmt == "joblib":
        joblib.dump(multi, path)
        back = joblib.load(path)
    else:
        export_model(multi, path)
        back = import_model(path, model=tiny_cnn(5))
    np.testing.assert_array_equal(back.predict(X_NEW), multi.predict(X_NEW))
    for a, b in zip(back.predict_proba(X_NEW), multi.predict_proba(X_NEW), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert [c.dtype for c in back.classes_] == [c.dtype for c in multi.classes_]


@pytest.mark.parametrize("params, y, match", [
    ({"task_weights": [1.0]}, Y_MT, "task_weights has 1 weights but y has 2"),
    ({"class_weight": "balanced"}, Y_MT, "class_weight applies to single-label"),
    ({"reject_label": -1}, Y_MT, "reject_label applies to single-label"),
    ({"calibration": "temperature", "validation_fraction": 0.2}, Y_MT,
     "calibration='temperature' applies to single-label and multi-label"),
    ({}, np.stack([Y_MT[:, 0], np.full(60, "x", dtype=object)], axis=1),
     r"y\[:, 1\] has 1 class"),
])
def test_multi_output_errors_name_the_problem(params, y, match):
    with pytest.raises(ValueError, match=match):
        toy(tiny_cnn(5), max_epochs=1, **params).fit(X_MT, y)


def test_multi_output_refuses_onnx_and_lazy_probabilities(multi, tmp_path):
    import dask.array as da

    from sktransfer import export_onnx

    with pytest.raises(ValueError, match="multi-output"):
        export_onnx(multi, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="one array per target column"):
        multi.predict_proba(da.from_array(X_NEW, chunks=20))
    lazy = multi.predict(da.from_array(X_NEW, chunks=20))
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), multi.predict(X_NEW))
