"""Knowledge distillation: a fine-tuned student taught by any fitted classifier."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sktransfer import PretrainedFeatureExtractor, export_model, import_model
from sktransfer._losses import DistillationLoss

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy

# enough training for the tiny network to learn X_TOY
LEARNS = {"max_epochs": 15, "batch_size": 8, "unfreeze": "all", "freeze_epochs": 0,
          "batchnorm": "recalibrate"}


def flatten(X: np.ndarray) -> np.ndarray:
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1) / 255


@pytest.fixture(scope="module")
def teacher():
    """Any classifier of images with predict_proba can teach: here a confident logistic
    regression on raw pixels."""
    return make_pipeline(FunctionTransformer(flatten), LogisticRegression(C=10.0)).fit(
        X_TOY, Y_TOY)


def test_the_loss_is_the_weighted_sum_of_label_and_teacher_terms():
    torch.manual_seed(0)
    z = torch.randn(4, 3)
    teacher = torch.softmax(torch.randn(4, 3), dim=1)
    y = torch.tensor([0, 2, -1, 1])
    w = torch.ones(4)
    T, a = 3.0, 0.25
    loss = DistillationLoss(T, a)(z, {"y": y, "w": w, "teacher": teacher})
    soft_t = torch.softmax(torch.log(teacher) / T, dim=1)
    kl = (soft_t * (torch.log(soft_t) - torch.log_softmax(z / T, dim=1))).sum(1) * T * T
    ce = torch.nn.functional.cross_entropy(z, y.clamp_min(0), reduction="none")
    expected = torch.stack([(1 - a) * ce[0] + a * kl[0], (1 - a) * ce[1] + a * kl[1],
                            kl[2], (1 - a) * ce[3] + a * kl[3]]).mean()  # row 2: no label
    torch.testing.assert_close(loss, expected)
    # without the teacher's probabilities (the learning-rate finder): labelled rows' CE
    torch.testing.assert_close(DistillationLoss(T, a)(z, {"y": y, "w": w}),
                               ce[[0, 1, 3]].mean())


def test_a_student_learns_the_teachers_classes_from_labelled_and_unlabelled_images(teacher):
    y = Y_TOY.astype(object)
    y[::2] = None  # half the images unlabelled: the teacher alone teaches them
    student = toy(teacher=teacher, **LEARNS).fit(X_TOY, y)
    assert student.classes_.tolist() == teacher[-1].classes_.tolist()
    agree = np.mean(student.predict(X_TOY) == teacher.predict(X_TOY))
    assert agree >= 0.75
    flops = student.inference_flops_
    assert flops["student"] > 0 and flops["teacher"] is None  # no network to count


def test_the_teachers_inference_cost_is_counted_beside_the_students():
    big = toy(tiny_cnn(3), max_epochs=1, image_size=32, resize_size=32).fit(X_TOY, Y_TOY)
    student = toy(teacher=big, max_epochs=1).fit(X_TOY, Y_TOY)
    flops = student.inference_flops_
    assert flops["teacher"] == pytest.approx(4 * flops["student"], rel=0.1)  # 4x pixels


def test_distillation_pulls_the_student_towards_the_teacher(teacher):
    """distill_weight=1 and no labels at all: the student imitates the teacher."""
    unlabelled = np.full(len(X_TOY), None, dtype=object)
    imitation = toy(teacher=teacher, distill_weight=1.0, **LEARNS).fit(X_TOY, unlabelled)
    target = teacher.predict_proba(X_TOY)
    before = toy(teacher=teacher, max_epochs=1, lr=1e-6).fit(X_TOY, unlabelled)
    gap = lambda m: np.abs(m.predict_proba(X_TOY) - target).mean()  # noqa: E731
    assert gap(imitation) < 0.6 * gap(before)


def test_errors_name_the_problem(teacher):
    with pytest.raises(ValueError, match=r"labels \['zebra'\] that are not classes"):
        toy(teacher=teacher, max_epochs=1).fit(X_TOY, np.r_[Y_TOY[:-1], ["zebra"]])
    unfitted = make_pipeline(PretrainedFeatureExtractor(tiny_cnn()), LogisticRegression())
    with pytest.raises(ValueError, match="not fitted"):
        toy(teacher=unfitted, max_epochs=1).fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="teacher"):
        toy(teacher="a string", max_epochs=1).fit(X_TOY, Y_TOY)


def test_saving_a_student(teacher, tmp_path):
    student = toy(teacher=teacher, max_epochs=2).fit(X_TOY, Y_TOY)
    export_model(student, tmp_path / "s.safetensors")  # the teacher is left out
    back = import_model(tmp_path / "s.safetensors", model=tiny_cnn())
    assert back.teacher is None
    np.testing.assert_allclose(back.predict_proba(X_TOY), student.predict_proba(X_TOY),
                               atol=1e-6)
    joblib.dump(student.set_params(teacher=None), tmp_path / "s.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "s.joblib").predict(X_TOY),
                                  student.predict(X_TOY))


def test_searches_and_clones_keep_the_fitted_teacher(teacher):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    student = toy(teacher=teacher, max_epochs=1)
    assert clone(student).teacher is teacher  # used, never refitted: not cloned
    search = GridSearchCV(student, {"distill_weight": [0.5, 0.9]}, cv=2).fit(X_TOY, Y_TOY)
    assert search.best_estimator_.teacher is teacher


def test_unlabelled_rows_in_validation_scores_and_weights(teacher):
    y = Y_TOY.astype(object)
    y[:6] = None
    clf = toy(teacher=teacher, max_epochs=2, validation_fraction=0.25,
              class_weight="balanced").fit(X_TOY, y)
    # scoring leaves the unlabelled rows out
    labelled = np.arange(6, 24)
    assert clf.score(X_TOY, y) == pytest.approx(clf.score(X_TOY[labelled], Y_TOY[labelled]))
    # a teacher's class without any labelled image is no error for class weights
    only_two = Y_TOY.astype(object)
    only_two[only_two == "emu"] = None
    toy(teacher=teacher, max_epochs=1, class_weight="balanced").fit(X_TOY, only_two)


def test_a_validation_split_needs_labels(teacher):
    unlabelled = np.full(len(X_TOY), None, dtype=object)
    with pytest.raises(ValueError, match="no row of y has a label; set validation_fraction"):
        toy(teacher=teacher, max_epochs=1, validation_fraction=0.2).fit(X_TOY, unlabelled)


def test_a_teacher_needs_one_label_per_image(teacher):
    y2 = np.stack([Y_TOY, Y_TOY], axis=1)
    with pytest.raises(ValueError, match="with a teacher, y must be 1-D"):
        toy(teacher=teacher, max_epochs=1).fit(X_TOY, y2)


def test_the_teachers_probabilities_are_part_of_the_checkpoint_key(teacher, tmp_path):
    first = toy(teacher=teacher, max_epochs=2, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    other = make_pipeline(FunctionTransformer(flatten), LogisticRegression(C=0.01)).fit(
        X_TOY, Y_TOY)
    second = toy(teacher=other, max_epochs=2, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    assert len(list(tmp_path.glob("*.ckpt"))) == 2  # not the first fit's student again
    assert not np.allclose(first.predict_proba(X_TOY), second.predict_proba(X_TOY))


def test_the_learning_rate_finder_sees_the_teacher(teacher):
    y = np.full(len(X_TOY), None, dtype=object)  # no label at all: the teacher alone
    result = toy(teacher=teacher).lr_find(X_TOY, y, num_steps=5)
    assert np.isfinite(result.losses).all() and max(result.losses) > 0


def test_a_measured_call_inside_another_is_not_started_again():
    from sktransfer._cost import _Energy

    previous = (_Energy._running, _Energy._failed)
    try:
        _Energy._running, _Energy._failed = True, False
        assert _Energy.start() is False  # the outer measurement counts it
    finally:
        _Energy._running, _Energy._failed = previous
