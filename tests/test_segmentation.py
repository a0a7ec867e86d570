"""FineTuneSegmenter: masks in every form, alignment through every preprocessing path,
ignore_index, the FCN and torchvision decoders, scoring, round trips, and the FCN against
a per-pixel baseline on a real-photo task."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import jaccard_score
from sklearn.model_selection import GridSearchCV, KFold

from sktransfer import (
    FineTuneSegmenter,
    export_model,
    import_model,
    mean_iou_score,
    mean_iou_scorer,
)
from sktransfer._losses import PixelLoss
from sktransfer._segmentation_data import SegmentationDataset, default_joint_augmentation
from sktransfer.datasets import load_photo_collage
from sktransfer.images import as_image_source

from ._helpers import cache_weights, tiny_cnn

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _painted(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Images whose colour tells each pixel's label: red for 1, blue for 0."""
    return [np.where(m[..., None] == 1, RED, BLUE).astype(np.uint8) for m in masks]


def _l_shapes(n: int, height: int = 20, width: int = 36, seed: int = 0) -> list[np.ndarray]:
    """Asymmetric masks: an L in the top-left corner, of random arm lengths."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        m = np.zeros((height, width), dtype=np.int64)
        m[: rng.integers(height // 2, height - 2), : rng.integers(3, 6)] = 1
        m[: rng.integers(3, 6), : rng.integers(width // 2, width - 2)] = 1
        masks.append(m)
    return masks


def _seg(**kw):
    params = dict(image_size=16, max_epochs=2, batch_size=4, random_state=0)
    params.update(kw)
    return FineTuneSegmenter(tiny_cnn(), **params)


def _weights(est):
    return {k: v.clone() for k, v in est.net_.module_.state_dict().items()}


RNG = np.random.default_rng(0)
X8 = RNG.integers(0, 256, size=(8, 18, 18, 3), dtype=np.uint8)
Y8 = (X8[..., 0] > 127).astype(np.int64)


# --------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("augment", [None, "default"])
def test_masks_stay_aligned_with_their_images_through_resizing_and_augmentation(augment):
    masks = _l_shapes(6)
    source = as_image_source(_painted(masks))
    aug = default_joint_augmentation(24) if augment else None
    torch.manual_seed(0)
    dataset = SegmentationDataset(source, 24, _as_masks(masks), augment=aug)
    flipped = 0
    for i in range(len(dataset)):
        img, target = dataset[i]
        mask = target["y"].numpy()
        assert mask.shape == (24, 24) and set(np.unique(mask)) <= {0, 1}  # never blended
        red = (img[0] > 200) & (img[2] < 60)
        blue = (img[2] > 200) & (img[0] < 60)
        assert np.all(mask[red.numpy()] == 1) and np.all(mask[blue.numpy()] == 0)
        assert red.sum() + blue.sum() > 0.6 * 24 * 24  # most pixels are checked
        flipped += mask[:, :12].sum() < mask[:, 12:].sum()  # the L's arm on the right
    if augment:
        assert flipped >= 1  # the flip ran, on both image and mask


def _as_masks(masks):
    from sktransfer._masks import as_mask_source

    return as_mask_source(masks, len(masks))


def test_predictions_have_each_images_own_size_and_follow_the_input_container():
    masks = _l_shapes(12) + _l_shapes(4, height=28, width=22, seed=1)
    images = _painted(masks)
    seg = _seg(image_size=24, max_epochs=25, lr=3e-2, unfreeze="all", freeze_epochs=0,
               batchnorm="recalibrate").fit(images, masks)
    pred = seg.predict(images)
    assert isinstance(pred, list)
    assert [p.shape for p in pred] == [m.shape for m in masks]
    assert pred[0].dtype == np.int64
    # aligned at the image's own size: the asymmetric L is found where it is
    assert mean_iou_score(masks, pred) > 0.9
    assert seg.score(images, masks) == pytest.approx(mean_iou_score(masks, pred))
    proba = seg.predict_proba(images[:2])
    assert [p.shape for p in proba] == [(20, 36, 2)] * 2
    np.testing.assert_allclose(proba[0].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba[1].argmax(-1), pred[1])
    stacked = seg.predict(np.stack(images[:3]))  # an image array gives a mask array
    assert isinstance(stacked, np.ndarray) and stacked.shape == (3, 20, 36)
    np.testing.assert_array_equal(stacked, np.stack(pred[:3]))


def test_mirror_tta_averages_the_image_and_its_mirror():
    seg = _seg().fit(X8, Y8)
    plain = seg.predict_proba(X8)
    mirrored = seg.predict_proba(X8[:, :, ::-1].copy())[:, :, ::-1]
    seg.set_params(tta=True)
    np.testing.assert_allclose(seg.predict_proba(X8), (plain + mirrored) / 2, atol=2e-3)
    seg.set_params(tta=3)
    with pytest.raises(ValueError, match="tta"):
        seg.predict(X8)


# --------------------------------------------------------------------------- ignore_index
def test_ignored_pixels_give_no_loss_and_no_gradient():
    loss = PixelLoss(ignore_index=255)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.randint(0, 3, (2, 4, 4))
    y[0, :2] = 255
    w = torch.ones(2)
    value = loss(logits, {"y": y, "w": w})
    value.backward()
    assert torch.all(logits.grad[0, :, :2] == 0)
    keep = y != 255
    expected = torch.nn.functional.cross_entropy(logits.detach().permute(0, 2, 3, 1)[keep],
                                                 y[keep])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    other = logits.detach().clone()
    other[0, :, :2] = 100 * torch.randn(3, 2, 4)  # anything at the ignored pixels
    assert loss(other, {"y": y, "w": w}).item() == pytest.approx(value.item(), rel=1e-6)
    # image weights: weight 2 counts like the image given twice
    twice = loss(torch.cat([logits.detach(), logits.detach()[1:]]),
                 {"y": torch.cat([y, y[1:]]), "w": torch.ones(3)})
    assert loss(logits.detach(), {"y": y, "w": torch.tensor([1.0, 2.0])}).item() == \
        pytest.approx(twice.item(), rel=1e-6)


def test_an_image_whose_pixels_are_all_ignored_changes_nothing():
    masks = Y8.copy()
    masks[3] = 255
    noisy = X8.copy()
    noisy[3] = np.random.default_rng(5).integers(0, 256, size=X8[3].shape)
    a = _seg(max_epochs=2).fit(X8, masks)
    b = _seg(max_epochs=2).fit(noisy, masks)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    changed = Y8.copy()
    c = _seg(max_epochs=2).fit(noisy, changed)  # the same image, now annotated, counts
    assert not all(torch.equal(wa[k], v) for k, v in _weights(c).items())


def test_ignore_index_is_left_out_of_the_score():
    truth = np.array([[[0, 1, 255, 255]]])
    pred = np.array([[[0, 1, 0, 1]]])
    assert mean_iou_score(truth, pred) == 1.0
    assert mean_iou_score(truth, pred, ignore_index=-1, n_classes=256) < 1.0


# --------------------------------------------------------------------------- metric
def test_mean_iou_pools_pixels_over_images_and_skips_absent_classes():
    rng = np.random.default_rng(1)
    truth = [rng.integers(0, 3, size=(5, 7)), rng.integers(0, 3, size=(4, 9))]
    pred = [rng.integers(0, 3, size=(5, 7)), rng.integers(0, 3, size=(4, 9))]
    flat_t = np.concatenate([t.ravel() for t in truth])
    flat_p = np.concatenate([p.ravel() for p in pred])
    assert mean_iou_score(truth, pred) == pytest.approx(
        jaccard_score(flat_t, flat_p, average="macro"))
    # a class in neither truth nor prediction counts in no mean
    assert mean_iou_score(truth, pred, n_classes=5) == pytest.approx(
        mean_iou_score(truth, pred))
    with pytest.raises(ValueError, match=r"y_true\[1\] is \(4, 9\) but y_pred\[1\]"):
        mean_iou_score(truth, [pred[0], pred[1][:, :8]])


# --------------------------------------------------------------------------- inputs
def test_mask_files_train_exactly_as_mask_arrays(tmp_path):
    paths = []
    for i, m in enumerate(Y8):
        mode = "L" if i % 2 else "P"  # palette PNGs store labels as indices
        img = Image.fromarray(m.astype(np.uint8), "L")
        if mode == "P":
            img = img.convert("P")
        path = tmp_path / f"m{i}.png"
        img.save(path)
        paths.append(str(path))
    a = _seg().fit(X8, Y8)
    b = _seg().fit(X8, paths)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert b.n_classes_ == 2 and list(b.classes_) == [0, 1]


def test_bad_masks_get_errors_naming_the_item(tmp_path):
    with pytest.raises(ValueError, match=r"y\[2\] is 17x18 \(HxW\) but its image X\[2\] is "
                                         r"18x18"):
        _seg().fit(X8, [*Y8[:2], Y8[2][:17], *Y8[3:]])
    bad = Y8.copy()
    bad[5, 3, 4] = 7
    with pytest.raises(ValueError, match=r"y\[5\] holds the label 7 \(at row 3, column 4\) "
                                         r"but n_classes=2"):
        _seg(n_classes=2).fit(X8, bad)
    with pytest.raises(ValueError, match=r"y\[1\] is a float32 mask"):
        _seg().fit(X8, [m.astype(np.float32) if i == 1 else m for i, m in enumerate(Y8)])
    with pytest.raises(ValueError, match="y is a float64 mask"):
        _seg().fit(X8, Y8.astype(float))
    missing = tmp_path / "nope.png"
    with pytest.raises(ValueError, match=r"y\[0\] \('.*nope.png'\): mask file not found"):
        _seg().fit(X8[:1], [str(missing)])
    rgb = tmp_path / "rgb.png"
    Image.fromarray(X8[0]).save(rgb)
    with pytest.raises(ValueError, match=r"y\[0\] \('.*rgb.png'\) is a RGB image; a mask "
                                         "file holds one class label per pixel"):
        _seg().fit(X8[:1], [str(rgb)])
    with pytest.raises(ValueError, match="X has 8 images but y has 7 masks"):
        _seg().fit(X8, Y8[:7])
    with pytest.raises(ValueError, match="single class"):
        _seg().fit(X8, np.zeros_like(Y8))
    with pytest.raises(ValueError, match="label -1"):
        _seg().fit(X8, Y8 - 1)


def test_user_data_is_never_written_to():
    X, y = X8.copy(), Y8.copy()
    _seg(augment=True).fit(X, y).predict(X)
    np.testing.assert_array_equal(X, X8)
    np.testing.assert_array_equal(y, Y8)


# --------------------------------------------------------------------------- networks
@pytest.mark.parametrize("skip, taps", [(False, ["layer4"]),
                                        ("16s", ["layer4", "layer3"]),
                                        (True, ["layer4", "layer3", "layer2"])])
def test_fcn_reads_the_stride_32_16_and_8_stages(skip, taps):
    seg = FineTuneSegmenter("resnet18", weights=None, image_size=32, max_epochs=1,
                            skip=skip, random_state=0).fit(X8, Y8)
    module = seg.net_.module_
    assert list(module.body.taps.values()) == taps
    assert sorted(module.head.score) == sorted(["out", "skip1", "skip2"][:len(taps)])


def test_skips_start_at_zero_so_training_starts_from_fcn_32s():
    from sktransfer._fcn import FCNHead

    head = FCNHead({"out": 8, "skip1": 4}, 3)
    feats = {"out": torch.randn(2, 8, 2, 2), "skip1": torch.randn(2, 4, 4, 4)}
    coarse = torch.nn.functional.interpolate(head.score["out"](feats["out"]), size=(4, 4),
                                             mode="bilinear", align_corners=False)
    torch.testing.assert_close(head(feats), coarse)


def test_fcn_on_a_timm_convnet_reads_its_stages_not_its_pooled_group():
    seg = FineTuneSegmenter("timm:convnext_atto", weights=None, image_size=64, max_epochs=1,
                            random_state=0).fit(X8[:4], Y8[:4])
    assert seg.layer_groups_[-1] == "pre_logits"  # pooled: not read by the FCN
    assert list(seg.net_.module_.body.taps.values()) == ["stages.3", "stages.2", "stages.1"]
    assert seg.predict(X8[:2]).shape == (2, 18, 18)


def test_a_backbone_without_feature_maps_is_refused_clearly():
    with pytest.raises(ValueError, match="needs a backbone whose layer groups give feature "
                                         "maps"):
        FineTuneSegmenter("vit_b_16", weights=None, max_epochs=1).fit(X8[:2], Y8[:2])


def test_torchvision_segmentation_model_loads_its_decoder_weights(torch_home):
    from torchvision import models as tvm

    path = cache_weights(tvm.segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT)
    state = torch.load(path, weights_only=True)
    seg = FineTuneSegmenter("lraspp_mobilenet_v3_large", image_size=32, max_epochs=1,
                            batch_size=4, random_state=0).fit(X8, Y8)
    module = seg.net_.module_
    torch.testing.assert_close(module.head.classifier.cbr[0].weight,
                               state["classifier.cbr.0.weight"])  # kept, head-only training
    assert module.head.classifier.low_classifier.out_channels == 2  # replaced: 2 classes
    assert seg.predict(X8[:2]).shape == (2, 18, 18)
    assert seg.preprocessing_.crop_size == 32
    default = FineTuneSegmenter("lraspp_mobilenet_v3_large")._load_backbone()
    assert default.preprocessing.crop_size == 520  # the weights' own size


def test_fcn_resnet50_by_name_with_random_weights():
    seg = FineTuneSegmenter("torchvision:fcn_resnet50", weights=None, image_size=32,
                            max_epochs=1, random_state=0).fit(X8[:4], Y8[:4])
    assert seg.layer_groups_ == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert seg.net_.module_.head.classifier[-1].out_channels == 2
    assert seg.predict(X8[:1]).shape == (1, 18, 18)


# --------------------------------------------------------------------------- round trips
def test_joblib_and_safetensors_round_trips_predict_the_same(tmp_path):
    seg = _seg(unfreeze=1).fit(X8, Y8)
    expected = seg.predict_proba(X8)
    joblib.dump(seg, tmp_path / "seg.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "seg.joblib").predict_proba(X8),
                                  expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(seg)).predict_proba(X8),
                                  expected)
    export_model(seg, tmp_path / "seg.safetensors")
    restored = import_model(tmp_path / "seg.safetensors", model=tiny_cnn())
    assert isinstance(restored, FineTuneSegmenter) and restored.n_classes_ == 2
    np.testing.assert_allclose(restored.predict_proba(X8), expected, atol=1e-6)


def test_a_checkpointed_fit_resumes_and_a_finished_one_returns_at_once(tmp_path):
    # a constant schedule: raising max_epochs then continues exactly as one long fit
    full = _seg(max_epochs=3, schedule="constant").fit(X8, Y8)
    first = _seg(max_epochs=2, schedule="constant", checkpoint=tmp_path).fit(X8, list(Y8))
    assert first.n_epochs_ == 2
    resumed = _seg(max_epochs=3, schedule="constant", checkpoint=tmp_path).fit(X8, list(Y8))
    assert resumed.n_epochs_ == 3
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    again = _seg(max_epochs=3, schedule="constant", checkpoint=tmp_path).fit(X8, list(Y8))
    assert len(again.net_.history) == 3  # finished: nothing trained
    assert all(torch.equal(wr[k], v) for k, v in _weights(again).items())


def test_grid_search_over_the_unfreeze_depth_with_the_iou_scorer():
    search = GridSearchCV(_seg(max_epochs=1, freeze_epochs=0), {"unfreeze": [0, "all"]},
                          cv=KFold(2), scoring=mean_iou_scorer, error_score="raise")
    search.fit(X8, list(Y8))
    assert search.best_params_["unfreeze"] in (0, "all")
    assert 0 <= search.best_score_ <= 1
    default = GridSearchCV(_seg(max_epochs=1), {"skip": [False, True]}, cv=KFold(2),
                           error_score="raise")
    default.fit(X8, Y8)  # the estimator's own score: the same mean IoU
    assert set(default.cv_results_["param_skip"]) == {False, True}


def test_dask_collections_are_refused_with_a_reason():
    import dask.array as da

    seg = _seg(max_epochs=1).fit(X8, Y8)
    with pytest.raises(TypeError, match="does not take Dask collections"):
        seg.predict(da.from_array(X8, chunks=4))


# --------------------------------------------------------------------------- real task
def _neighbourhoods(X: np.ndarray, k: int = 3) -> np.ndarray:
    """Each pixel's RGB values on a 4x4 grid of offsets up to ``k`` (48 features)."""
    P = np.pad(X.astype(np.float32) / 255, ((0, 0), (k, k), (k, k), (0, 0)), mode="reflect")
    h, w = X.shape[1:3]
    grid = [P[:, i:i + h, j:j + w] for i in range(0, 2 * k + 1, 2)
            for j in range(0, 2 * k + 1, 2)]
    return np.concatenate(grid, -1).reshape(-1, 3 * len(grid))


@pytest.mark.slow
def test_fcn_on_pretrained_lite0_beats_a_per_pixel_baseline_on_photo_collages():
    """Which photo did each pixel come from: 40 training collages of 64 px, 3 seeds."""
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    fcn, pixel = [], []
    for seed in range(3):
        X, y = load_photo_collage(40, size=64, seed=10 + seed)
        X_test, y_test = load_photo_collage(40, size=64, seed=100 + seed)
        seg = FineTuneSegmenter(efficientnet_lite0(), image_size=64, mean=LITE_MEAN,
                                std=LITE_STD, max_epochs=16, batch_size=16, lr=3e-3,
                                augment=True, random_state=seed).fit(X, y)
        fcn.append(seg.score(X_test, y_test))
        rows = np.random.default_rng(seed).choice(y.size, 20000, replace=False)
        baseline = LogisticRegression(max_iter=500).fit(_neighbourhoods(X)[rows],
                                                        y.reshape(-1)[rows])
        pred = baseline.predict(_neighbourhoods(X_test)).reshape(y_test.shape)
        pixel.append(mean_iou_score(y_test, pred))
    print(f"mean IoU: FCN {fcn}, per-pixel logistic regression {pixel}")
    assert np.mean(fcn) > np.mean(pixel) + 0.08
    assert all(f > p for f, p in zip(fcn, pixel, strict=True))  # on every seed


def test_early_stopping_recalibration_and_the_lr_finder_work_on_masks():
    seg = _seg(max_epochs=6, validation_fraction=0.25, patience=1, batchnorm="recalibrate",
               unfreeze="all", freeze_epochs=0, lr=0.5).fit(X8, Y8)  # a rate that diverges
    history = seg.net_.history
    assert "valid_loss" in history[-1]
    valid = history[:, "valid_loss"]
    assert seg.best_epoch_ == int(np.argmin(valid)) + 1  # the best epoch's weights are kept
    found = _seg(unfreeze=1).lr_find(X8, Y8, num_steps=8)
    assert len(found.lrs) == len(found.losses) > 1 and found.suggestion > 0


def test_masks_in_every_container_train_alike():
    """An (n, H, W) array, a list, an object array, a tensor, a pandas Series."""
    import pandas as pd

    expected = _weights(_seg(max_epochs=1).fit(X8, Y8))
    containers = [list(Y8), np.array([*Y8, None], dtype=object)[:-1],
                  torch.from_numpy(Y8), pd.Series(list(Y8)), Y8[..., None]]
    for y in containers:
        got = _weights(_seg(max_epochs=1).fit(X8, y))
        assert all(torch.equal(expected[k], got[k]) for k in expected), type(y)
