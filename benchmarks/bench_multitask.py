"""Several tasks on one backbone: one shared multi-output model vs one model per task.

A two-task problem built offline from real photos (scikit-learn's ``china.jpg`` and
``flower.jpg``), one backbone with real ImageNet weights (EfficientNet-Lite0, shipped in a
package). Each image is a ``--crop`` px square cut from one cell of a 2 x 3 grid laid
over a photo (placed at random inside the cell, upright), resized to ``--size`` px, then
turned by a random multiple of 90 degrees (``np.rot90``). Two labels per image, needing
different cues:

- task A, ``region`` (12 classes, strings such as ``"china r0c2"``): which photo and which
  grid cell: content and texture, whatever the orientation (a rotation-*invariant* task);
- task B, ``rotation`` (4 classes, ints 0/90/180/270): how the patch was turned: where
  the sky, the ground, the stem are (a rotation-*sensitive* task). The two tasks pull the
  shared features in opposite directions on orientation, which is the hard case for
  sharing.

``--task-a photo`` replaces task A with which photo (2 classes).
``--per-cell`` training images per cell (seed 1: 12 x 17 = 204 by default) and 20 test
images per cell (seed 2: 240), with the rotations drawn independently of the cells.

Compared, with the same settings (``FineTuneClassifier(efficientnet_lite0(),
mean=LITE_MEAN, std=LITE_STD, image_size=--size, unfreeze=--unfreeze,
max_epochs=--epochs, random_state=seed)``, other parameters at their defaults, so one
head-only epoch first):

- ``shared``: one model fitted on the ``(n, 2)`` label array (one backbone, one softmax
  head per column, the two cross-entropies summed);
- ``shared, task_weights=W``: the same with ``--task-weights`` (A, B), on
  ``--weighted-seeds`` only (skipped with ``--task-weights`` not given);
- ``separate``: two models, one per column, each fitted on its own 1-D labels.

Per configuration and seed: test accuracy per task, the total training FLOPs
(``fit_cost_.total_flops``, summed over the two models of ``separate``), the same with
the backward FLOPs counted right (torch's FLOP counter, which the library uses, ignores
``groups`` in a convolution's weight gradient, so it counts EfficientNet's depthwise
convolutions as dense ones: see :func:`corrected_train_flops`), the training wall time
(``fit_cost_.wall_time_s``, summed likewise; on a shared 2-core machine it moves with
the load) and the forward FLOPs per image at inference
(``sktransfer._cost.inference_flops``; ``separate`` runs both networks, so its cost is
the sum). The table gives mean +- std over the seeds.

Defaults (204 training images at 64 px, 4 epochs) keep the whole run near 10 minutes on
2 busy cores; ``--epochs 10 --per-cell 24`` is a fuller run.

Run: OMP_NUM_THREADS=2 python benchmarks/bench_multitask.py [--seeds 0 1 2]
     [--epochs 4] [--unfreeze all] [--task-weights 2 1 --weighted-seeds 0]
Writes benchmarks/results/multitask.json after each row and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _paths import path_of
from PIL import Image
from sklearn.datasets import load_sample_images
from sklearn.metrics import accuracy_score
from torch.utils import flop_counter

from sktransfer import FineTuneClassifier
from sktransfer._cost import count_flops, inference_flops
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

PHOTOS = ("china", "flower")


def two_task_patches(per_cell: int, *, crop: int, size: int, seed: int, task_a: str):
    """Upright ``crop`` px cuts of each grid cell of each photo, resized to ``size`` px and
    turned by a random multiple of 90 degrees. Returns the images ``(n, size, size, 3)``
    and the labels ``(n, 2)`` (object: task A's strings, task B's ints)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for name, img in zip(PHOTOS, load_sample_images().images, strict=True):
        h, w = img.shape[0] // 2, img.shape[1] // 3
        for gi in range(2):
            for gj in range(3):
                for _ in range(per_cell):
                    r = rng.integers(gi * h, (gi + 1) * h - crop + 1)
                    c = rng.integers(gj * w, (gj + 1) * w - crop + 1)
                    patch = Image.fromarray(img[r: r + crop, c: c + crop])
                    patch = np.asarray(patch.resize((size, size), Image.BILINEAR))
                    k = int(rng.integers(4))
                    X.append(np.ascontiguousarray(np.rot90(patch, k)))
                    y.append([name if task_a == "photo" else f"{name} r{gi}c{gj}", 90 * k])
    return np.stack(X), np.asarray(y, dtype=object)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                         _dilation, transposed, _output_padding, _groups, output_mask,
                         out_shape=None, **kwargs) -> int:
    """A convolution's backward FLOPs: its gradients with respect to the input and to the
    weight each cost as much as the forward convolution. (torch's own formula, up to at
    least 2.14, ignores ``groups`` in the weight gradient, counting a depthwise
    convolution's as if it were dense: 20x EfficientNet-Lite0's real backward FLOPs.)"""
    forward = flop_counter.conv_flop_count(x_shape, w_shape, grad_out_shape,
                                           transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def corrected_train_flops(models: list) -> int:
    """``fit_cost_.total_flops`` summed over ``models``, with the backward FLOPs scaled
    by (backward per image counted with grouped convolutions right) / (as the library
    counts it), both on the fitted network with its final trainable parameters."""
    total = 0
    for m in models:
        size = m.preprocessing_.crop_size
        library = count_flops(m.net_.module_, (3, size, size), train=True)[1]
        net = copy.deepcopy(m.net_.module_).cpu().float().train()
        x = torch.zeros((2, 3, size, size))
        out = net(x)
        mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
        with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            out.float().sum().backward()
        right = counter.get_total_flops() // 2
        cost = m.fit_cost_
        total += cost.forward_flops + round(cost.backward_flops * right / max(library, 1))
    return int(total)


def make(seed: int, args, task_weights=None) -> FineTuneClassifier:
    u = args.unfreeze if args.unfreeze == "all" else int(args.unfreeze)
    return FineTuneClassifier(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                              image_size=args.size, unfreeze=u, max_epochs=args.epochs,
                              task_weights=task_weights, random_state=seed)


def fit(clf: FineTuneClassifier, X, y) -> FineTuneClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.fit(X, y)


def accuracy(y_true, y_pred) -> float:
    return float(accuracy_score(list(y_true), list(y_pred)))


def run(config: str, seed: int, data: dict, args) -> dict:
    Xtr, ytr, Xte, yte = data["train"] + data["test"]
    t0 = time.perf_counter()
    if config == "separate":
        # each column as a plain 1-D array (ints, strings): an object array of ints is
        # "unknown" to scikit-learn's type_of_target, which single-label y goes through
        models = [fit(make(seed, args), Xtr, np.asarray(ytr[:, j].tolist()))
                  for j in range(2)]
        acc = [accuracy(yte[:, j], m.predict(Xte)) for j, m in enumerate(models)]
        cost = models[0].fit_cost_ + models[1].fit_cost_
        infer = sum(inference_flops(m) for m in models)
    else:
        weights = None if config == "shared" else args.task_weights
        model = fit(make(seed, args, weights), Xtr, ytr)
        pred = model.predict(Xte)
        assert pred.shape == yte.shape, pred.shape
        acc = [accuracy(yte[:, j], pred[:, j]) for j in range(2)]
        score = model.score(Xte, yte)
        if abs(score - np.mean(acc)) > 1e-9:
            print(f"    ! score() = {score:.4f} but mean per-column accuracy = "
                  f"{np.mean(acc):.4f}", flush=True)
        cost = model.fit_cost_
        infer = inference_flops(model)
        models = [model]
    fixed = corrected_train_flops(models)
    return {"config": config, "seed": seed, "accuracy_A": acc[0], "accuracy_B": acc[1],
            "accuracy_mean": float(np.mean(acc)), "train_flops": int(cost.total_flops),
            "train_flops_corrected": fixed,
            "fit_wall_s": float(cost.wall_time_s), "outer_wall_s": time.perf_counter() - t0,
            "inference_flops_per_image": int(infer), "n_images_seen": int(cost.n_images),
            "path": path_of(cost), "n_models": len(models)}


def summarise(rows: list[dict], configs: list[str], args) -> str:
    def ms(values, fmt=".3f"):
        v = np.asarray(values, dtype=float)
        return f"{v.mean():{fmt}} +- {v.std():{fmt}}"

    head = (f"{'config':31s} {'n':>2s} {'task A (' + args.task_a + ')':>15s} "
            f"{'task B (rotation)':>17s} {'mean of A, B':>15s} {'train GFLOPs':>12s} "
            f"{'corrected':>9s} {'train wall s':>13s} {'infer MFLOPs/img':>16s}")
    lines = [head, "-" * len(head)]
    for config in configs:
        rs = [r for r in rows if r["config"] == config]
        if not rs:
            continue
        name = config if config != "weighted" else \
            f"shared, task_weights={[float(w) for w in args.task_weights]}"
        lines.append(
            f"{name:31s} {len(rs):2d} {ms([r['accuracy_A'] for r in rs]):>15s} "
            f"{ms([r['accuracy_B'] for r in rs]):>17s} "
            f"{ms([r['accuracy_mean'] for r in rs]):>15s} "
            f"{np.mean([r['train_flops'] for r in rs]) / 1e9:12.0f} "
            f"{np.mean([r['train_flops_corrected'] for r in rs]) / 1e9:9.0f} "
            f"{ms([r['fit_wall_s'] for r in rs], fmt='.0f'):>13s} "
            f"{np.mean([r['inference_flops_per_image'] for r in rs]) / 1e6:16.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--unfreeze", default="all")
    parser.add_argument("--task-a", choices=["region", "photo"], default="region")
    parser.add_argument("--per-cell", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--task-weights", type=float, nargs=2, default=None,
                        help="also fit the shared model with these weights (A, B)")
    parser.add_argument("--weighted-seeds", type=int, nargs="+", default=None,
                        help="the seeds of the task_weights row (default: --seeds)")
    parser.add_argument("--output", default="multitask.json")
    args = parser.parse_args(argv)
    opts = dict(crop=args.crop, size=args.size, task_a=args.task_a)
    data = {"train": two_task_patches(args.per_cell, seed=1, **opts),
            "test": two_task_patches(20, seed=2, **opts)}
    print(f"train {data['train'][0].shape}, test {data['test'][0].shape}; "
          f"task A = {args.task_a}, task B = rotation", flush=True)
    configs = ["shared"] + (["weighted"] if args.task_weights else []) + ["separate"]
    out = Path(__file__).parent / "results" / args.output
    out.parent.mkdir(exist_ok=True)
    rows, t_start = [], time.perf_counter()
    weighted_seeds = args.seeds if args.weighted_seeds is None else args.weighted_seeds
    for seed in args.seeds:
        for config in configs:
            if config == "weighted" and seed not in weighted_seeds:
                continue
            row = run(config, seed, data, args)
            row.update(epochs=args.epochs, unfreeze=args.unfreeze, size=args.size,
                       task_a=args.task_a, task_weights=args.task_weights
                       if config == "weighted" else None,
                       n_train=len(data["train"][0]), n_test=len(data["test"][0]))
            rows.append(row)
            out.write_text(json.dumps(rows, indent=1))  # kept if a later run fails
            print(f"{config:9s} seed={seed} A={row['accuracy_A']:.3f} "
                  f"B={row['accuracy_B']:.3f} train {row['train_flops'] / 1e9:.0f} GFLOPs "
                  f"({row['train_flops_corrected'] / 1e9:.0f} corrected) "
                  f"{row['fit_wall_s']:.1f}s ({row['path']}) infer "
                  f"{row['inference_flops_per_image'] / 1e6:.1f} MFLOPs/img", flush=True)
    print()
    print(summarise(rows, configs, args))
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
