"""Segmentation: FineTuneSegmenter's speed against a hand-written FCN loop, and its mean IoU
against a per-pixel baseline on photo collages.

(1) Speed. The same FCN-8s on resnet18 (random init: speed does not depend on the
weights), written by hand as a PyTorch user would (the trunk's stages in sequence, 1x1
scores on layer2/3/4 summed after bilinear upsampling, upsampled to the input), same data
(uint8 images and masks already at the network's size), batch size, trainable set (head +
top ``--unfreeze`` groups, BatchNorm in train mode), optimizer (AdamW with the same
per-group rates), loss (per-pixel cross-entropy) and float32. Training: median seconds per
epoch (first epoch of each run excluded), target ``sktransfer / hand <= 1.10``.
Inference: images/s of ``predict`` (masks at the images' size) against the hand-written
forward + argmax, target ``sktransfer / hand >= 0.95``.

(2) Quality. :func:`sktransfer.datasets.load_photo_collage` (which photo did each pixel
come from), pretrained EfficientNet-Lite0, ``--train`` training and ``--test`` test
collages per seed, 3 seeds: mean IoU of the FCN (head only, and every layer) against
logistic regression on each pixel's raw 7x7 neighbourhood (48 values). Seed 0's
predictions are drawn to ``docs/images/segmentation.png`` (image, true mask, predicted).

Each figure is printed with the arithmetic path it was measured in (``path``: native or
emulated bf16, float32, GPU autocast), as FineTuneSegmenter recorded it in ``fit_cost_``.

Run: .venv/bin/python benchmarks/bench_segmentation.py [--part speed|quality|both]
Writes benchmarks/results/segmentation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _paths import path_of, sides
from torch import nn
from torch.nn import functional as F
from torchvision import models as tvm

from sktransfer import FineTuneSegmenter, mean_iou_score
from sktransfer._runtime import resolve_device
from sktransfer.datasets import load_photo_collage


class HandFCN8s(nn.Module):
    """FCN-8s on a torchvision resnet18, as written by hand."""

    def __init__(self, n_classes: int):
        super().__init__()
        net = tvm.resnet18(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        self.score4 = nn.Conv2d(512, n_classes, 1)
        self.score3 = nn.Conv2d(256, n_classes, 1)
        self.score2 = nn.Conv2d(128, n_classes, 1)

    def forward(self, x):
        c2 = self.layer2(self.stem(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        out = self.score4(c4)
        out = F.interpolate(out, size=c3.shape[-2:], mode="bilinear") + self.score3(c3)
        out = F.interpolate(out, size=c2.shape[-2:], mode="bilinear") + self.score2(c2)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear")


def hand_written(args, X, y, device) -> tuple[list[float], float]:
    torch.manual_seed(0)
    model = HandFCN8s(int(y.max()) + 1).to(device)
    trunk = [("layer4", model.layer4), ("layer3", model.layer3), ("layer2", model.layer2),
             ("layer1", model.stem[4])][: args.unfreeze]
    model.requires_grad_(False)
    heads = [model.score4, model.score3, model.score2]
    param_groups = [{"params": [p for h in heads for p in h.parameters()], "lr": args.lr}]
    for depth, (_, module) in enumerate(trunk, start=1):
        module.requires_grad_(True)
        param_groups.append({"params": list(module.parameters()), "lr": args.lr * 0.3**depth})
    for h in heads:
        h.requires_grad_(True)
    optimizer = torch.optim.AdamW(param_groups, lr=args.lr, weight_decay=1e-4)
    frozen_bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                 and not any(p.requires_grad for p in m.parameters())]
    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1) * 255
    images = torch.from_numpy(X).permute(0, 3, 1, 2)
    masks = torch.from_numpy(y)
    durations = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for m in frozen_bn:
            m.eval()
        order = torch.randperm(len(images))
        for s in range(0, len(order), args.batch_size):
            idx = order[s:s + args.batch_size]
            xb = (images[idx].to(device).float() - mean) / std
            loss = F.cross_entropy(model(xb), masks[idx].to(device), ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        out = [model((images[s:s + args.batch_size].to(device).float() - mean) / std)
               .argmax(1).cpu() for s in range(0, len(images), args.batch_size)]
    predict_s = time.perf_counter() - start
    assert torch.cat(out).shape == masks.shape
    return durations, len(images) / predict_s


def speed(args, device) -> dict:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(args.n, args.size, args.size, 3), dtype=np.uint8)
    y = rng.integers(0, 5, size=(args.n, args.size, args.size)).astype(np.int64)
    lib, hand, lib_pred, hand_pred = [], [], [], []
    for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
        seg = FineTuneSegmenter(
            "resnet18", weights=None, unfreeze=args.unfreeze, freeze_epochs=0, lr=args.lr,
            lr_decay=0.3, max_epochs=args.epochs, batch_size=args.batch_size,
            batchnorm="train", schedule="constant", image_size=args.size, random_state=0,
            precision="float32").fit(X, y)
        lib += list(seg.net_.history[:, "dur"])[1:]
        lib_path = path_of(seg.fit_cost_)  # predict runs in the same precision
        start = time.perf_counter()
        assert seg.predict(X).shape == y.shape
        lib_pred.append(args.n / (time.perf_counter() - start))
        durations, rate = hand_written(args, X, y, device)
        hand += durations[1:]
        hand_pred.append(rate)
    t_lib, t_hand = statistics.median(lib), statistics.median(hand)
    p_lib, p_hand = statistics.median(lib_pred), statistics.median(hand_pred)
    path = sides(sktransfer=lib_path, hand_loop=path_of(device))  # the hand loop: float32
    print(f"training: sktransfer {t_lib:.2f} s/epoch ({args.n / t_lib:.1f} img/s), hand-written "
          f"{t_hand:.2f} s/epoch ({args.n / t_hand:.1f} img/s): ratio {t_lib / t_hand:.3f} "
          f"(target <= 1.10)  [{path}]")
    print(f"inference: sktransfer {p_lib:.1f} img/s, hand-written {p_hand:.1f} img/s: ratio "
          f"{p_lib / p_hand:.3f} (target >= 0.95)  [{path}]")
    return {"n": args.n, "size": args.size, "batch_size": args.batch_size,
            "unfreeze": args.unfreeze, "sktransfer_s_per_epoch": t_lib,
            "hand_s_per_epoch": t_hand, "train_ratio": t_lib / t_hand,
            "sktransfer_predict_img_s": p_lib, "hand_predict_img_s": p_hand,
            "predict_ratio": p_lib / p_hand, "path": path, "sktransfer_epochs": lib,
            "hand_epochs": hand, "sktransfer_predict_runs": lib_pred,
            "hand_predict_runs": hand_pred}


def neighbourhoods(X: np.ndarray, k: int = 3) -> np.ndarray:
    """Each pixel's RGB values on a 4x4 grid of offsets up to ``k`` (48 values)."""
    P = np.pad(X.astype(np.float32) / 255, ((0, 0), (k, k), (k, k), (0, 0)), mode="reflect")
    h, w = X.shape[1:3]
    grid = [P[:, i:i + h, j:j + w] for i in range(0, 2 * k + 1, 2)
            for j in range(0, 2 * k + 1, 2)]
    return np.concatenate(grid, -1).reshape(-1, 3 * len(grid))


def quality(args) -> dict:
    from sklearn.linear_model import LogisticRegression

    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    configs = {"fcn8s_head_only": dict(unfreeze=0),
               "fcn8s_all_layers": dict(unfreeze="all", lr_decay=0.5, freeze_epochs=1)}
    scores = {"pixel_logreg": [], **{name: [] for name in configs}}
    seconds = {name: [] for name in configs}
    paths = {"pixel_logreg": "float64 (scikit-learn)"}  # the FCNs': from their fit_cost_
    for seed in range(3):
        X, y = load_photo_collage(args.train, size=args.image, seed=10 + seed)
        X_test, y_test = load_photo_collage(args.test, size=args.image, seed=100 + seed)
        rows = np.random.default_rng(seed).choice(y.size, min(y.size, 30000), replace=False)
        baseline = LogisticRegression(max_iter=1000).fit(neighbourhoods(X)[rows],
                                                         y.reshape(-1)[rows])
        pred = baseline.predict(neighbourhoods(X_test)).reshape(y_test.shape)
        scores["pixel_logreg"].append(mean_iou_score(y_test, pred))
        for name, params in configs.items():
            start = time.perf_counter()
            seg = FineTuneSegmenter(efficientnet_lite0(), image_size=args.image, mean=LITE_MEAN,
                                    std=LITE_STD, max_epochs=args.quality_epochs,
                                    batch_size=16, lr=3e-3, augment=True, random_state=seed,
                                    **params).fit(X, y)
            seconds[name].append(time.perf_counter() - start)
            scores[name].append(seg.score(X_test, y_test))
            paths[name] = path_of(seg.fit_cost_)
            if seed == 0 and name == "fcn8s_all_layers":
                draw(X_test[:6], y_test[:6], seg.predict(X_test[:6]))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in scores.items()))
    for name, values in scores.items():
        print(f"{name:>18}: mean IoU {np.mean(values):.3f} +- {np.std(values):.3f} "
              f"({', '.join(f'{v:.3f}' for v in values)})  [{paths[name]}]")
    return {"train": args.train, "test": args.test, "image": args.image,
            "epochs": args.quality_epochs, "scores": scores, "fit_seconds": seconds,
            "paths": paths}


def draw(images: np.ndarray, truth: np.ndarray, pred: np.ndarray,
         path: str = "docs/images/segmentation.png") -> None:
    """Rows: image, true mask, predicted mask (flower pixels bright)."""
    from PIL import Image

    def grey(m):
        return np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2)

    gap = np.full((images.shape[1], 4, 3), 255, dtype=np.uint8)
    rows = [np.concatenate([x for img in part for x in (img, gap)][:-1], axis=1)
            for part in (images, [grey(t) for t in truth], [grey(p) for p in pred])]
    hgap = np.full((4, rows[0].shape[1], 3), 255, dtype=np.uint8)
    picture = np.concatenate([rows[0], hgap, rows[1], hgap, rows[2]], axis=0)
    Image.fromarray(picture).resize((picture.shape[1] * 2, picture.shape[0] * 2),
                                    Image.NEAREST).save(path)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "quality", "both"], default="both")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unfreeze", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--image", type=int, default=80)
    parser.add_argument("--quality-epochs", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/results/segmentation.json")
    args = parser.parse_args(argv)
    device = resolve_device("auto")
    torch.set_num_threads(torch.get_num_threads())
    record = {"device": str(device), "torch": torch.__version__}
    if args.part in ("speed", "both"):
        record["speed"] = speed(args, device)
    if args.part in ("quality", "both"):
        record["quality"] = quality(args)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**previous, **record}, indent=2))


if __name__ == "__main__":
    main()
