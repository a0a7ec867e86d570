"""Fine-tuning time per epoch: FineTuneClassifier vs a hand-written PyTorch training loop.

Same model (torchvision resnet18, random init: speed does not depend on the weights), same
data (uint8 images already at the crop size), batch size, trainable set (head + top
``--unfreeze`` layer groups, frozen BatchNorm in eval mode), optimizer (AdamW with the same
per-group learning rates) and loss. The hand-written loop shuffles, normalises each batch,
runs forward/backward/step, as a PyTorch user would write it.

Run: .venv/bin/python benchmarks/bench_finetune.py [--n 256] [--epochs 3] [--rounds 3]
Rounds alternate between the two; the median epoch (first epoch of each run excluded) counts.
Prints seconds per epoch for both and the ratio (target <= 1.10) and writes a JSON record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sktransfer import FineTuneClassifier, load_backbone
from sktransfer._runtime import resolve_device


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
    lib, hand = [], []
    for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
        clf = FineTuneClassifier(
            args.model, weights=None, unfreeze=args.unfreeze, freeze_epochs=0, lr=args.lr,
            lr_decay=0.3, max_epochs=args.epochs, batch_size=args.batch_size,
            batchnorm="train", schedule="constant",  # what the hand-written loop does
            image_size=args.size, resize_size=args.size, random_state=0,
        ).fit(X, y)
        lib += list(clf.net_.history[:, "dur"])[1:]  # the first epoch warms up, in both
        hand += hand_written(args, X, y, device)[1:]
    t_lib, t_hand = statistics.median(lib), statistics.median(hand)
    print(f"device={device} model={args.model} n={args.n} size={args.size} "
          f"batch_size={args.batch_size} unfreeze={args.unfreeze} torch={torch.__version__}")
    print(f"sktransfer s/epoch {t_lib:.2f}  hand-written s/epoch {t_hand:.2f}  "
          f"ratio {t_lib / t_hand:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "device": str(device), "model": args.model, "n": args.n, "size": args.size,
        "batch_size": args.batch_size, "unfreeze": args.unfreeze, "torch": torch.__version__,
        "sktransfer_s_per_epoch": t_lib, "hand_s_per_epoch": t_hand,
        "ratio": t_lib / t_hand, "sktransfer_epochs": lib, "hand_epochs": hand}, indent=2))


if __name__ == "__main__":
    main()
