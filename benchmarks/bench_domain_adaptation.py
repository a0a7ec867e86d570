"""Domain adaptation on an MNIST-M-like task: sktransfer's DANN and CORAL against fine-tuning
on the source only, frozen features + LogisticRegression, and skada's DANN.

Task: ``sktransfer.datasets.load_digits_shift`` (source: scikit-learn's digits, grey on
black; target: digits blended into colour crops of scikit-learn's sample photos),
``--n`` source images and ``--n-target`` target images (all 898 by default) at
``--size`` pixels; the target labels are
hidden during fit and score the target accuracy. Same backbone (EfficientNet-Lite0 with
its ImageNet weights, shipped in a package), same budget (``--epochs`` epochs, batches
of 32 source images, plus 32 target images for the adapting methods, every layer trained
from the first epoch), same optimiser
(AdamW, lr 1e-3, every layer trained at the same rate) for every fine-tuning method.

skada is benchmark-only: this script runs in its own environment, ``.venv-bench``
(created on first use), never in the package's dependencies. skada's DANN gets the same
network (the sktransfer backbone's body and a linear head, inputs normalised the same
way), its own domain classifier (100 units + BatchNorm), its constant weight ``reg=1``,
and trains BatchNorm layers with batch statistics (skorch's train mode); its epoch is set
to a pass over the source (``max_samples="source"``: 12 full batches of 32 + 32, where
sktransfer also runs the 13th, partial one).

Run: python benchmarks/bench_domain_adaptation.py [--seeds 0 1 2] [--n 400]
     [--n-target 898] [--size 48] [--epochs 15] [--configs ...] [--output NAME.json]
Writes benchmarks/results/domain_adaptation.json and prints a table; each run and each row
names the arithmetic path it ran in (``path``: native or emulated bf16, float32, GPU
autocast; sktransfer's from the estimator's cost report, skada's float32 on skorch's device).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".venv-bench"
PEERS = ["skada==0.6.0"]
CONFIGS = ["frozen+LR", "source-only", "dann", "dann-w0.1", "coral", "skada-dann",
           "skada-dann-sigmoid"]
DEFAULT_CONFIGS = ["frozen+LR", "source-only", "dann", "coral", "skada-dann",
                   "skada-dann-sigmoid"]


def ensure_env() -> None:
    """Re-run this script in the benchmark-only environment, creating it if needed."""
    python = ENV / "bin" / "python"
    if Path(sys.prefix).resolve() == ENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"],
                       check=True)
    if subprocess.run([str(python), "-c", "import skada"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def lite0():
    from sktransfer.zoo import efficientnet_lite0

    return efficientnet_lite0()


def common(args, seed):
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    return dict(image_size=args.size, resize_size=args.size, mean=LITE_MEAN, std=LITE_STD,
                unfreeze="all", freeze_epochs=0, lr=1e-3, lr_decay=1.0, batch_size=32,
                max_epochs=args.epochs, random_state=seed)


def run_sktransfer(config, args, seed, task):
    import numpy as np
    from _paths import path_of
    from sklearn.linear_model import LogisticRegression

    from sktransfer import (
        DomainAdaptationClassifier,
        FineTuneClassifier,
        PretrainedFeatureExtractor,
    )

    Xs, ys, Xt, yt = task
    kw = common(args, seed)
    start = time.perf_counter()
    if config == "frozen+LR":
        ext = PretrainedFeatureExtractor(lite0(), image_size=args.size,
                                         resize_size=args.size, mean=kw["mean"],
                                         std=kw["std"])
        clf = LogisticRegression(max_iter=3000).fit(ext.fit_transform(Xs), ys)
        predicted = clf.predict(ext.transform(Xt))
        return {"target_acc": float(np.mean(predicted == yt)), "s_per_epoch": None,
                "fit_s": time.perf_counter() - start, "path": path_of(ext.transform_cost_)}
    if config == "source-only":
        est = FineTuneClassifier(lite0(), **kw).fit(Xs, ys)
    else:
        method = "coral" if config == "coral" else "dann"
        weight = 0.1 if config == "dann-w0.1" else 1.0
        # the losses alone, as skada's DANN trains: no AdaBN, no guard's twin (the
        # defaults' study is bench_adaptation_study.py)
        est = DomainAdaptationClassifier(lite0(), method=method, adaptation_weight=weight,
                                         adabn=False, guard=False,
                                         **kw).fit(Xs, ys, X_target=Xt)
    fit_s = time.perf_counter() - start
    history = est.net_.history
    row = {"target_acc": float(np.mean(est.predict(Xt) == yt)),
           "source_acc": float(np.mean(est.predict(Xs) == ys)),
           "s_per_epoch": float(np.mean(history[:, "dur"])), "fit_s": fit_s,
           "path": path_of(est.fit_cost_)}
    if "domain_acc" in history[-1]:
        row["domain_acc"] = [round(float(v), 3) for v in history[:, "domain_acc"]]
    return row


def run_skada(args, seed, task, sigmoid=False):
    import numpy as np
    import torch
    from _paths import path_of
    from skada.deep import DANN
    from torch import nn

    from sktransfer import load_backbone

    Xs, ys, Xt, yt = task
    kw = common(args, seed)
    torch.manual_seed(seed)
    backbone = load_backbone(lite0(), None, image_size=args.size, resize_size=args.size,
                             mean=kw["mean"], std=kw["std"])

    def prepared(X):
        x = torch.as_tensor(X).permute(0, 3, 1, 2)
        return backbone.preprocessing.normalize(x).numpy().astype(np.float32)

    class Classifier(nn.Module):  # skada passes sample_weight to the module
        def __init__(self):
            super().__init__()
            self.body = backbone.body
            self.head = nn.Linear(backbone.num_features, 10)

        def forward(self, x, sample_weight=None):
            return self.head(self.body(x))

    module = Classifier()
    X = np.concatenate([prepared(Xs), prepared(Xt)])
    y = np.concatenate([ys, -np.ones(len(Xt), dtype=np.int64)])
    domain = np.concatenate([np.ones(len(Xs)), -np.ones(len(Xt))]).astype(np.int64)
    domain_classifier = None
    if sigmoid:
        # skada 0.6.0's default DomainClassifier ends in nn.Softmax over its single output:
        # constantly 1, with zero gradient. The same head ending in a Sigmoid instead.
        from skada.deep.modules import DomainClassifier

        domain_classifier = DomainClassifier(num_features=backbone.num_features)
        domain_classifier.classifier[-1] = nn.Sigmoid()
    net = DANN(module, reg=1, layer_name="body", num_features=backbone.num_features,
               domain_classifier=domain_classifier,
               batch_size=32, max_epochs=args.epochs, optimizer=torch.optim.AdamW,
               optimizer__weight_decay=1e-4, lr=1e-3, train_split=None, verbose=0,
               iterator_train__max_samples="source")  # epoch = a pass over the source
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(X, y, sample_domain=domain)
        fit_s = time.perf_counter() - start
        predicted = net.predict(prepared(Xt), sample_domain=-np.ones(len(Xt), np.int64))
        source_pred = net.predict(prepared(Xs), sample_domain=np.ones(len(Xs), np.int64),
                                  allow_source=True)
    return {"target_acc": float(np.mean(predicted == yt)),
            "source_acc": float(np.mean(source_pred == ys)),
            "s_per_epoch": float(np.mean(net.history_[:, "dur"])), "fit_s": fit_s,
            # skorch without autocast: float32 on skorch's device (cpu unless told)
            "path": path_of(net.device, show_device=True)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--n-target", type=int, default=898,
                        help="target images (at most 898, the default)")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=CONFIGS)
    parser.add_argument("--output", default="domain_adaptation.json",
                        help="file name under benchmarks/results/")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from sktransfer.datasets import load_digits_shift

    results = {c: [] for c in args.configs}
    for seed in args.seeds:
        Xs, ys, Xt, yt = load_digits_shift(size=args.size, n_target=args.n_target,
                                           seed=seed)
        task = (Xs[:args.n], ys[:args.n], Xt, yt)
        for config in args.configs:
            row = (run_skada(args, seed, task, sigmoid=config.endswith("sigmoid"))
                   if config.startswith("skada") else run_sktransfer(config, args, seed, task))
            row["seed"] = seed
            results[config].append(row)
            print(config, json.dumps(row), flush=True)
    summary = {}
    print(f"\n{'method':<20} {'target acc (mean ± sd)':<24} {'source acc':<11} s/epoch  path")
    for config, rows in results.items():
        acc = np.array([r["target_acc"] for r in rows])
        src = [r["source_acc"] for r in rows if "source_acc" in r]
        epoch = [r["s_per_epoch"] for r in rows if r["s_per_epoch"] is not None]
        summary[config] = {"target_acc_mean": float(acc.mean()),
                           "target_acc_sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                           "source_acc_mean": float(np.mean(src)) if src else None,
                           "s_per_epoch_mean": float(np.mean(epoch)) if epoch else None,
                           "path": " / ".join(dict.fromkeys(r["path"] for r in rows))}
        s = summary[config]
        print(f"{config:<20} {s['target_acc_mean']:.3f} ± {s['target_acc_sd']:.3f}"
              f"{'':<10} {s['source_acc_mean'] or float('nan'):<11.3f} "
              f"{s['s_per_epoch_mean'] or float('nan'):<7.2f}  {s['path']}")
    out = {"task": {"n_source": args.n, "n_target": args.n_target, "size": args.size,
                    "epochs": args.epochs, "seeds": args.seeds,
                    "backbone": "EfficientNet-Lite0 (ImageNet)"},
           "threads": torch.get_num_threads(), "summary": summary, "runs": results}
    path = ROOT / "benchmarks" / "results" / args.output
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    ensure_env()
    main()
