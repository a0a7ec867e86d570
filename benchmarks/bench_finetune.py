"""Fine-tuning time per epoch: FineTuneClassifier vs a hand-written PyTorch training loop.

Same model (torchvision resnet18, random init: speed does not depend on the weights), same
data (uint8 images already at the crop size), batch size, trainable set (head + top
``--unfreeze`` layer groups, frozen BatchNorm in eval mode), optimizer (AdamW with the same
per-group learning rates) and loss. The hand-written loop shuffles, normalises each batch,
runs forward/backward/step, as a PyTorch user would write it.

The hand-written loop runs in float32. ``ratio`` compares it with FineTuneClassifier in
float32 too (the library's overhead; target <= 1.10); ``auto speed-up`` compares it with
FineTuneClassifier's default ``precision="auto"`` (bf16 autocast on CPUs with native bf16
and on GPUs; target on a native-bf16 CPU: >= 1.3). Where "auto" is float32 (CPUs without
native bf16) one run serves both.

Run: .venv/bin/python benchmarks/bench_finetune.py [--n 256] [--epochs 3] [--rounds 3]
Rounds alternate between the two; the median epoch (first epoch of each run excluded) counts.
Prints seconds per epoch and the ratios, each with the arithmetic path both sides ran in
(``path``, ``auto_path``: native or emulated bf16, float32, GPU autocast), and writes a JSON
record.
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

from sktransfer import FineTuneClassifier, load_backbone
from sktransfer._runtime import autocast_dtype, resolve_device


def hand_written(args, X, y, device) -> list[float]:
    torch.manual_seed(0)
    backbone = load_backbone(args.model, weights=None, image_size=args.size,
                             resize_size=args.size)
    body, groups = backbone.body, backbone.groups
    head = nn.Linear(backbone.num_features, int(y.max()) + 1)
    model = nn.Sequential(body, head).to(device)
    body.requires_grad_(False)
    param_groups = [{"params": head.parameters(), "lr": args.lr}]
    for depth, (_, members) in enumerate(groups[::-1][: args.unfreeze], start=1):
        params = [p for m in members for p in body.net.get_submodule(m).parameters()]
        for p in params:
            p.requires_grad_(True)
        param_groups.append({"params": params, "lr": args.lr * 0.3**depth})
    optimizer = torch.optim.AdamW(param_groups, lr=args.lr, weight_decay=1e-4)
    frozen_bn = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)
                 and not any(p.requires_grad for p in m.parameters())]
    prep = backbone.preprocessing
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255
    images = torch.from_numpy(X).permute(0, 3, 1, 2)
    targets = torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()
    durations = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for m in frozen_bn:
            m.eval()
        order = torch.randperm(len(images))
        for s in range(0, len(order), args.batch_size):
            idx = order[s : s + args.batch_size]
            xb = (images[idx].to(device).float() - mean) / std
            loss = loss_fn(model(xb), targets[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return durations


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unfreeze", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="benchmarks/results/finetune.json")
    args = parser.parse_args(argv)

    device = resolve_device("auto")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(args.n, args.size, args.size, 3), dtype=np.uint8)
    y = np.arange(args.n) % 10
    auto_is_fp32 = autocast_dtype(device, "auto") is None
    paths = {}  # precision -> the path FineTuneClassifier recorded in its fit_cost_

    def epochs_of(precision):
        clf = FineTuneClassifier(
            args.model, weights=None, unfreeze=args.unfreeze, freeze_epochs=0, lr=args.lr,
            lr_decay=0.3, max_epochs=args.epochs, batch_size=args.batch_size,
            batchnorm="train", schedule="constant",  # what the hand-written loop does
            image_size=args.size, resize_size=args.size, random_state=0,
            precision=precision,
        ).fit(X, y)
        paths[precision] = path_of(clf.fit_cost_)
        return list(clf.net_.history[:, "dur"])[1:]  # the first epoch warms up, in both

    lib, auto, hand = [], [], []
    for _ in range(args.rounds):  # alternate, so drifting machine load hits all alike
        lib += epochs_of("float32")
        auto += lib[-(args.epochs - 1):] if auto_is_fp32 else epochs_of("auto")
        hand += hand_written(args, X, y, device)[1:]
    t_lib, t_auto, t_hand = (statistics.median(v) for v in (lib, auto, hand))
    hand_path = path_of(device)  # the hand-written loop runs in float32
    path = sides(sktransfer=paths["float32"], hand_loop=hand_path)
    auto_path = sides(sktransfer=paths.get("auto", paths["float32"]), hand_loop=hand_path)
    print(f"device={device} model={args.model} n={args.n} size={args.size} "
          f"batch_size={args.batch_size} unfreeze={args.unfreeze} torch={torch.__version__} "
          f"auto={autocast_dtype(device, 'auto') or torch.float32}")
    print(f"sktransfer float32 s/epoch {t_lib:.2f}  hand-written float32 s/epoch {t_hand:.2f}  "
          f"ratio {t_lib / t_hand:.3f}  [{path}]")
    print(f"sktransfer auto s/epoch {t_auto:.2f}  auto speed-up {t_hand / t_auto:.3f}  "
          f"[{auto_path}]")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "device": str(device), "model": args.model, "n": args.n, "size": args.size,
        "batch_size": args.batch_size, "unfreeze": args.unfreeze, "torch": torch.__version__,
        "sktransfer_s_per_epoch": t_lib, "hand_s_per_epoch": t_hand,
        "ratio": t_lib / t_hand, "path": path, "sktransfer_auto_s_per_epoch": t_auto,
        "auto_speedup": t_hand / t_auto, "auto_path": auto_path, "sktransfer_epochs": lib,
        "auto_epochs": auto, "hand_epochs": hand}, indent=2))


if __name__ == "__main__":
    main()
