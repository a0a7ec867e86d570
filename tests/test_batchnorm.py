"""BatchNorm while fine-tuning: frozen (default), recalibrated, or trained with momentum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback
from torch import nn

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor
from sktransfer._batchnorm import recalibrate
from sktransfer._training import ImageDataset
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

from ._helpers import X_TOY, Y_TOY, tiny_cnn, toy

# what these check depends on precision="auto"'s path: make test reruns them with the
# CPU's bf16 answer flipped (pytest -m precision --native-bf16=flip)
pytestmark = pytest.mark.precision


def _bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


def test_frozen_mode_keeps_every_batchnorm_in_eval_and_trains_its_affine_parameters():
    model = tiny_cnn()
    before = dict(model.state_dict())
    modes = []

    class Spy(Callback):
        def on_batch_end(self, net, training, **kwargs):
            if training:
                body = net.module_.body.net
                modes.append((body[1].training, body[4].training))

    clf = toy(model, unfreeze="all", freeze_epochs=0, batchnorm="frozen",
              callbacks=[Spy()]).fit(X_TOY, Y_TOY)
    after = {k.removeprefix("body.net."): v for k, v in clf.net_.module_.state_dict().items()}
    assert modes and all(m == (False, False) for m in modes)
    for key in ("1.running_mean", "1.running_var", "4.running_mean", "4.running_var"):
        assert torch.equal(before[key], after[key])  # statistics as pretrained
    for key in ("1.weight", "4.weight", "4.bias"):
        assert not torch.equal(before[key], after[key])  # affine parameters trained


def test_recalibrate_sets_the_running_statistics_of_the_training_images():
    # float32 arithmetic checked to 1e-5: pinned (the bf16 path: test_bf16.py)
    clf = toy(unfreeze=1, freeze_epochs=0, batchnorm="recalibrate", batch_size=8,
              precision="float32")
    clf.fit(X_TOY, Y_TOY)
    module = clf.net_.module_
    body = module.body.net
    # the statistics BN 4 sees over all training images, computed directly
    seen = []
    hook = body[4].register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    module.eval()
    with torch.no_grad():
        module(torch.from_numpy(X_TOY).permute(0, 3, 1, 2).contiguous())
    hook.remove()
    x = seen[0].float()
    per_batch = x.split(8)  # recalibration averages the statistics of its batches
    mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in per_batch]).mean(0)
    var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in per_batch]).mean(0)
    torch.testing.assert_close(body[4].running_mean, mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(body[4].running_var, var, atol=1e-5, rtol=1e-4)
    assert body[4].momentum == 0.1  # restored after the cumulative pass
    # the frozen group's BatchNorm kept its pretrained statistics
    assert torch.equal(body[1].running_mean, tiny_cnn().state_dict()["1.running_mean"])


def test_recalibrated_best_epoch_statistics_match_its_weights():
    y_noise = np.random.default_rng(3).choice(["a", "b"], size=len(X_TOY))  # valid loss rises
    clf = toy(unfreeze="all", freeze_epochs=0, batchnorm="recalibrate", lr=0.3, max_epochs=8,
              validation_fraction=0.5, patience=8, schedule="constant", batch_size=6)
    clf.fit(X_TOY, y_noise)
    assert clf.best_epoch_ < 8  # the kept weights are an earlier epoch's
    stats = _bn_stats(clf.net_.module_)
    targets = np.searchsorted(clf.classes_, y_noise)
    train_idx, valid_idx = clf._split(targets, seed=0)  # the fit's split, in its order
    assert list(valid_idx) == clf.net_.train_split.keywords["valid_ds"].indices
    from sktransfer.images import as_image_source

    recalibrate(clf.net_, ImageDataset(as_image_source(X_TOY), clf.preprocessing_, targets,
                                       train_idx))
    for key, value in _bn_stats(clf.net_.module_).items():
        torch.testing.assert_close(value, stats[key], atol=1e-6, rtol=1e-5)
    # and the validation loss that chose the epoch was measured with those statistics
    valid_ds = clf.net_.train_split.keywords["valid_ds"]
    proba = torch.from_numpy(clf.net_.predict_proba(valid_ds))
    valid_y = torch.tensor([valid_ds[i][1]["y"] for i in range(len(valid_ds))])
    loss = nn.functional.nll_loss(torch.log(proba), valid_y).item()
    assert loss == pytest.approx(min(clf.net_.history[:, "valid_loss"]), rel=1e-4)


def test_train_mode_updates_statistics_with_the_momentum_only():
    model = tiny_cnn()
    clf = toy(model, unfreeze="all", freeze_epochs=0, batchnorm="train", max_epochs=1,
              batch_size=24, precision="float32").fit(X_TOY, Y_TOY)  # one step, 24 images
    body = clf.net_.module_.body.net
    # BN 1 saw conv 0 (initial weights) of the batch once: momentum 0.1 moved its
    # running mean a tenth of the way from 0 to the batch mean
    x = clf.preprocessing_.normalize(torch.from_numpy(X_TOY).permute(0, 3, 1, 2))
    with torch.no_grad():
        batch_mean = model[0](x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(body[1].running_mean, 0.1 * batch_mean, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_fine_tuning_every_layer_far_from_imagenet_does_not_collapse(no_network):
    """Real ImageNet weights (EfficientNet-Lite0, BN momentum 0.01) on handwritten digits.

    With BatchNorm trained the old way (``batchnorm="train"``) the running statistics
    stay ImageNet's while the weights move: the model learns, its predictions collapse
    (0.43 here). The default must stay within a few points of frozen features.
    """
    digits = load_digits()
    X, y = (digits.images / 16 * 255).astype(np.uint8), digits.target
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), 20, replace=False)
                            for c in range(10)])
    test = rng.choice(np.setdiff1d(np.arange(len(y)), train), 300, replace=False)
    net = efficientnet_lite0()
    prep = dict(image_size=64, resize_size=64, mean=LITE_MEAN, std=LITE_STD)
    frozen = make_pipeline(PretrainedFeatureExtractor(net, **prep),
                           LogisticRegression(max_iter=3000)).fit(X[train], y[train])
    acc_frozen = frozen.score(X[test], y[test])
    deep = FineTuneClassifier(net, unfreeze="all", freeze_epochs=1, max_epochs=6,
                              random_state=0, **prep).fit(X[train], y[train])
    acc_deep = deep.score(X[test], y[test])
    old = deep.set_params(batchnorm="train").fit(X[train], y[train]).score(X[test], y[test])
    print(f"digits, Lite0 at 64 px: frozen features {acc_frozen:.3f}, every layer "
          f"fine-tuned {acc_deep:.3f} (BatchNorm trained the plain way: {old:.3f})")
    assert acc_deep >= acc_frozen - 0.03
    assert old < acc_frozen - 0.2  # the collapse this guards against is real
