"""Low-rank adapters (``adapter="lora"``) against frozen features and full fine-tuning.

Part 1, real ImageNet weights offline: EfficientNet-Lite0 (``sktransfer.zoo``, shipped in a
package; ``mean=LITE_MEAN, std=LITE_STD``), ``FineTuneClassifier`` with its defaults
(``freeze_epochs=1`` head-only warm-up, one-cycle schedule, AdamW, ``batchnorm="frozen"``,
``lr_decay=None``: the stem trains at ``lr / 100``, ``precision="auto"``) except
``image_size``, ``max_epochs`` (the same for every row), ``batch_size`` (16: a few more
optimizer steps from few images) and the rows' parameters, on three
tasks built offline at ``--size`` px, from near ImageNet to far:

- ``regions`` (near: photos): ``sktransfer.datasets.load_region_patches``, 12 classes,
  ``--per-class`` training patches per class (seed 1), ``--n-test // 12`` test patches per
  class (seed 2);
- ``digits-photo`` (between): the target domain of ``load_digits_shift`` (MNIST-M-like:
  scikit-learn's digits blended into crops of the sample photos), split at random into
  ``--n-train`` training and ``--n-test`` test images;
- ``digits`` (far): scikit-learn's digits, 8x8 upscaled bilinearly to RGB, split at random
  into ``--n-train`` training and ``--n-test`` test images.

Rows (``--seeds`` each; the seed is ``random_state``, the data stay the same):
``frozen`` (``unfreeze=0``: the head alone) at lr 1e-3 and at 1e-2 (a control: the head of
a LoRA row trains at that row's ``lr`` too); ``full`` (``unfreeze="all"``) at lr 1e-3, the
library's default; ``lora`` (``unfreeze="all", adapter="lora"``, rank 8, alpha 8, merged
after fit) at each of ``--lora-lrs``.

Reported: test accuracy; trainable parameters (the ``trainable`` rows of ``summary()``);
optimizer-state bytes, measured (a callback sums the tensors of ``net.optimizer_.state`` at
the end of each epoch and keeps the largest; ``fit`` clears the state afterwards) and
cross-checked against AdamW's 2 float32 per trainable parameter (8 bytes each, plus a step
counter per tensor); gradient bytes (the ``.grad`` tensors at the end of each epoch, largest
kept); seconds per epoch (``fit_cost_.wall_time_s / n_epochs_``: the warm-up epoch, where
only the head trains, included) and the median duration of the epochs after the warm-up
(``net_.history``).

Part 2, a timm ViT with random init (``timm.create_model(--vit, pretrained=False,
img_size=--vit-size, num_classes=10)``, passed as ``model=``; ``mean``/``std`` 0.5) on
``--vit-n`` random images with random labels (accuracy means nothing here): full
fine-tuning vs LoRA (``unfreeze="all"``), one seed, ``--vit-epochs`` epochs. Each row runs
in its own process so that its peak resident memory (``ru_maxrss``) is its own; the same
parameter, optimizer-state, gradient and time figures as part 1.

Part 3 (first, ``--timing-repeats`` > 0), seconds per epoch robust to shared cores: each
model's full and LoRA fits (3 epochs) alternate ``--timing-repeats`` times and each keeps
its fastest trained epoch (``interleaved_timing``): parts 1 and 2's times are single fits,
slowed by whatever else ran. ``--timing-only`` stops after it.

The machine's cores are shared (``OMP_NUM_THREADS=2`` and ``n_threads=2``); every row names
its arithmetic path (``benchmarks/_paths.py``).

Run: OMP_NUM_THREADS=2 python benchmarks/bench_lora.py [--seeds 0 1] [--epochs 5]
     [--tasks regions digits-photo digits] [--lora-lrs 1e-3 1e-2] [--rows frozen full lora]
     [--no-vit] [--timing-repeats 3] [--timing-only] [--output lora.json]
(defaults shown; parts 1-2 took 23 minutes on 2 cores shared with two other benchmarks,
part 3 about 2 more: far less on idle cores)
Writes benchmarks/results/lora.json (after each row) and prints tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import path_of

N_THREADS = 2


class TrainingMemory(Callback):
    """Largest optimizer-state and gradient bytes seen at the end of an epoch."""

    def __init__(self):
        self.state_bytes = 0
        self.grad_bytes = 0
        self.state_floats = 0

    def on_epoch_end(self, net, **kwargs):
        state = [t for s in net.optimizer_.state.values() for t in s.values()
                 if hasattr(t, "numel")]
        self.state_bytes = max(self.state_bytes,
                               sum(t.numel() * t.element_size() for t in state))
        self.state_floats = max(self.state_floats,
                                sum(t.numel() for t in state if t.ndim > 0))
        self.grad_bytes = max(self.grad_bytes, sum(
            p.grad.numel() * p.grad.element_size() for p in net.module_.parameters()
            if p.grad is not None))


# ----------------------------------------------------------------------------- data
def upscale_digits(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray((i / 16 * 255).astype(np.uint8))
                                .resize((size, size), Image.BILINEAR).convert("RGB"))
                     for i in images])


def make_tasks(args) -> dict:
    from sklearn.datasets import load_digits

    from sktransfer.datasets import load_digits_shift, load_region_patches

    n, m = args.n_train, args.n_test
    tasks = {}
    if "regions" in args.tasks:
        Xtr, ytr = load_region_patches(args.per_class, size=args.size, seed=1)
        Xte, yte = load_region_patches(args.n_test // 12, size=args.size, seed=2)
        tasks["regions"] = (Xtr, ytr, Xte, yte)
    if "digits-photo" in args.tasks:
        _, _, X, y = load_digits_shift(size=args.size, n_target=n + m, seed=0)
        tasks["digits-photo"] = (X[:n], y[:n], X[n:], y[n:])
    if "digits" in args.tasks:
        d = load_digits()
        order = np.random.default_rng(0).permutation(len(d.target))[: n + m]
        X, y = upscale_digits(d.images[order], args.size), d.target[order]
        tasks["digits"] = (X[:n], y[:n], X[n:], y[n:])
    return tasks


def rows_of(args) -> list[tuple[str, dict]]:
    rows = [("frozen", {"unfreeze": 0, "lr": 1e-3}), ("frozen", {"unfreeze": 0, "lr": 1e-2}),
            ("full", {"unfreeze": "all", "lr": 1e-3})]
    rows += [("lora", {"unfreeze": "all", "adapter": "lora", "lr": lr})
             for lr in args.lora_lrs]
    return [(name, params) for name, params in rows if name in args.rows]


# ----------------------------------------------------------------------------- fits
def fit_and_measure(clf, X, y) -> tuple[dict, object]:
    memory = TrainingMemory()
    clf.set_params(callbacks=[("training_memory", memory)])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    fit_s = time.perf_counter() - t0
    summary = clf.summary()
    trainable = sum(r["params"] for r in summary if r["trainable"])
    durs = [h["dur"] for h in clf.net_.history[clf.freeze_epochs:]
            if "dur" in h] if clf.unfreeze != 0 else []
    return {
        "trainable_params": int(trainable),
        "total_params": int(sum(r["params"] for r in summary)),
        "optimizer_state_bytes": int(memory.state_bytes),
        "optimizer_state_floats": int(memory.state_floats),
        "adamw_estimate_bytes": 8 * int(trainable),
        "grad_bytes": int(memory.grad_bytes),
        "n_epochs": int(clf.n_epochs_),
        "fit_s": fit_s,
        "s_per_epoch": clf.fit_cost_.wall_time_s / clf.n_epochs_,
        "s_per_trained_epoch": float(np.median(durs)) if durs else None,
        "path": path_of(clf.fit_cost_),
    }, clf


def run_task(task: str, data, name: str, params: dict, seed: int, args) -> dict:
    from sktransfer import FineTuneClassifier
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    Xtr, ytr, Xte, yte = data
    clf = FineTuneClassifier(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                             image_size=args.size, max_epochs=args.epochs,
                             batch_size=args.batch_size, random_state=seed,
                             n_threads=N_THREADS, **params)
    row, clf = fit_and_measure(clf, Xtr, ytr)
    row.update(task=task, row=name, lr=params["lr"], seed=seed,
               accuracy=float(clf.score(Xte, yte)), n_train=len(ytr), n_test=len(yte))
    return row


def run_vit_one(name: str, args) -> dict:
    """One ViT row, in this process (called in a child process by ``run_vit``)."""
    import timm
    import torch

    from sktransfer import FineTuneClassifier

    torch.manual_seed(0)
    vit = timm.create_model(args.vit, pretrained=False, img_size=args.vit_size,
                            num_classes=10)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(args.vit_n, args.vit_size, args.vit_size, 3),
                     dtype=np.uint8)
    y = rng.integers(0, 10, size=args.vit_n)
    params = {"unfreeze": "all"} if name == "full" else {"unfreeze": "all",
                                                          "adapter": "lora"}
    clf = FineTuneClassifier(vit, weights=None, mean=(0.5,) * 3, std=(0.5,) * 3,
                             image_size=args.vit_size, resize_size=args.vit_size,
                             max_epochs=args.vit_epochs, random_state=0,
                             n_threads=N_THREADS, **params)
    row, clf = fit_and_measure(clf, X, y)
    row.update(task=f"{args.vit} @{args.vit_size}px (random init)", row=name, lr=clf.lr,
               seed=0, n_train=args.vit_n,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def run_vit(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--vit-one", name, "--vit", args.vit,
           "--vit-size", str(args.vit_size), "--vit-n", str(args.vit_n),
           "--vit-epochs", str(args.vit_epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])



def interleaved_timing(args) -> list[dict]:
    """Seconds per trained epoch, full fine-tuning vs LoRA, robust to shared cores.

    Each model's two variants are fitted in turn ``--timing-repeats`` times (3 epochs: the
    warm-up and 2 trained ones); a variant's figure is the fastest trained epoch over all
    its fits (``net_.history``'s ``dur``), the others being slowed by whatever else ran.
    EfficientNet-Lite0 on the ``regions`` training patches; the ViT on ``--vit-n`` random
    images.
    """
    import timm
    import torch

    from sktransfer import FineTuneClassifier
    from sktransfer.datasets import load_region_patches
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    X, y = load_region_patches(args.per_class, size=args.size, seed=1)
    rng = np.random.default_rng(0)
    Xv = rng.integers(0, 256, size=(args.vit_n, args.vit_size, args.vit_size, 3),
                      dtype=np.uint8)
    yv = rng.integers(0, 10, size=args.vit_n)

    def vit():
        torch.manual_seed(0)
        return timm.create_model(args.vit, pretrained=False, img_size=args.vit_size,
                                 num_classes=10)

    models = {
        "EfficientNet-Lite0": (efficientnet_lite0, X, y, dict(
            mean=LITE_MEAN, std=LITE_STD, image_size=args.size, batch_size=args.batch_size)),
        args.vit: (vit, Xv, yv, dict(weights=None, mean=(0.5,) * 3, std=(0.5,) * 3,
                                     image_size=args.vit_size, resize_size=args.vit_size)),
    }
    variants = {"full": {}, "lora": {"adapter": "lora"}}
    out = []
    for model, (make, Xm, ym, kw) in models.items():
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(args.timing_repeats):
            for name, extra in variants.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf = FineTuneClassifier(make(), unfreeze="all", max_epochs=3,
                                             random_state=0, n_threads=N_THREADS,
                                             **kw, **extra).fit(Xm, ym)
                best[name] = min([best[name]] + [h["dur"] for h in clf.net_.history[1:]])
                path = path_of(clf.fit_cost_)
        for name in variants:
            out.append({"model": model, "row": name, "n_images": len(ym),
                        "best_s_per_trained_epoch": best[name], "path": path,
                        "repeats": args.timing_repeats})
        print(f"{model}: fastest trained epoch ({len(ym)} images, best of "
              f"{args.timing_repeats} interleaved fits): full {best['full']:.2f} s, "
              f"lora {best['lora']:.2f} s ({path})", flush=True)
    return out


# ----------------------------------------------------------------------------- output
def mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:7.2f}"


def print_tables(rows: list[dict]) -> None:
    eff = [r for r in rows if "peak_rss_mb" not in r]
    if eff:
        print("\nEfficientNet-Lite0 (ImageNet weights): test accuracy, mean +- sd over seeds")
        keys = list(dict.fromkeys((r["row"], r["lr"]) for r in eff))
        tasks = list(dict.fromkeys(r["task"] for r in eff))
        print(f"{'row':18s}" + "".join(f"{t:>16s}" for t in tasks)
              + f"{'trainable':>11s}{'opt MB':>8s}{'grad MB':>8s}{'s/epoch':>8s}"
              + f"{'s/trained ep':>13s}")
        for name, lr in keys:
            mine = [r for r in eff if (r["row"], r["lr"]) == (name, lr)]
            line = f"{name + f' lr={lr:g}':18s}"
            for t in tasks:
                acc = [r["accuracy"] for r in mine if r["task"] == t]
                line += (f"{np.mean(acc):10.3f}+-{np.std(acc):.3f}" if acc
                         else f"{'-':>16s}")
            trained = [r["s_per_trained_epoch"] for r in mine
                       if r["s_per_trained_epoch"] is not None]
            line += (f"{mine[0]['trainable_params']:11,d}"
                     f"{mb(max(r['optimizer_state_bytes'] for r in mine))}"
                     f"{mb(max(r['grad_bytes'] for r in mine))}"
                     f"{np.mean([r['s_per_epoch'] for r in mine]):8.1f}"
                     + (f"{np.mean(trained):13.1f}" if trained else f"{'-':>13s}"))
            print(line)
        print("paths: " + ", ".join(sorted({r["path"] for r in eff})))
    vit = [r for r in rows if "peak_rss_mb" in r]
    if vit:
        print(f"\n{vit[0]['task']}, {vit[0]['n_train']} random images, one seed")
        print(f"{'row':10s}{'trainable':>12s}{'opt MB':>9s}{'grad MB':>9s}"
              f"{'s/epoch':>9s}{'s/trained ep':>13s}{'peak RSS MB':>12s}  path")
        for r in vit:
            print(f"{r['row']:10s}{r['trainable_params']:12,d}"
                  f"{mb(r['optimizer_state_bytes']):>9s}{mb(r['grad_bytes']):>9s}"
                  f"{r['s_per_epoch']:9.2f}{r['s_per_trained_epoch']:13.2f}"
                  f"{r['peak_rss_mb']:12.0f}  {r['path']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tasks", nargs="+", default=["regions", "digits-photo", "digits"])
    parser.add_argument("--lora-lrs", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--rows", nargs="+", default=["frozen", "full", "lora"],
                        choices=["frozen", "full", "lora"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=120)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--no-vit", action="store_true")
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--vit", default="vit_small_patch16_224")
    parser.add_argument("--vit-size", type=int, default=64)
    parser.add_argument("--vit-n", type=int, default=96)
    parser.add_argument("--vit-epochs", type=int, default=3)
    parser.add_argument("--vit-one", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="lora.json")
    args = parser.parse_args(argv)
    if args.vit_one:
        print(json.dumps(run_vit_one(args.vit_one, args)))
        return
    out = Path(__file__).parent / "results" / args.output
    out.parent.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    rows = []

    if args.timing_repeats:
        timing = interleaved_timing(args)
        out.write_text(json.dumps({"args": vars(args), "timing": timing, "rows": rows},
                                  indent=1))
        if args.timing_only:
            return
    else:
        timing = []

    def save(row):
        rows.append(row)
        out.write_text(json.dumps({"args": vars(args), "timing": timing, "rows": rows,
                                   "total_s": time.perf_counter() - t_start}, indent=1))

    if not args.no_vit:
        for name in ("full", "lora"):
            row = run_vit(name, args)
            save(row)
            print(f"vit {name:5s} trainable={row['trainable_params']:,} "
                  f"opt={mb(row['optimizer_state_bytes'])} MB "
                  f"{row['s_per_epoch']:.2f} s/epoch rss={row['peak_rss_mb']:.0f} MB",
                  flush=True)
    tasks = make_tasks(args)
    for task, data in tasks.items():
        for name, params in rows_of(args):
            for seed in args.seeds:
                row = run_task(task, data, name, params, seed, args)
                save(row)
                print(f"{task:12s} {name:6s} lr={row['lr']:<6g} seed={seed} "
                      f"acc={row['accuracy']:.3f} trainable={row['trainable_params']:,} "
                      f"opt={mb(row['optimizer_state_bytes'])} MB "
                      f"{row['s_per_epoch']:.1f} s/epoch ({row['fit_s']:.0f}s)", flush=True)
    print_tables(rows)
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
