"""label_issues: does confident learning find planted label errors with real pretrained
features?

Tasks, built offline: ``digits`` (scikit-learn's 1,797 handwritten digits, 8 x 8 upscaled
bilinearly to 64 x 64 RGB, 10 classes) and ``regions``
(``sktransfer.datasets.load_region_patches(50, size=96)``: 600 patches of the two sample
photos, 12 classes). For each seed, ``--noise`` (10 %) of the labels are flipped, each to
another class drawn uniformly (``numpy.random.default_rng(seed)``); then::

    pipe = Pipeline([("embed", PretrainedFeatureExtractor(efficientnet_lite0(),
                                                          mean=LITE_MEAN, std=LITE_STD,
                                                          cache=folder)),
                     ("clf", LogisticRegression(max_iter=2000))])
    issues, self_confidence = label_issues(pipe, X, noisy, cv=5, return_scores=True)

(through ``sktransfer._label_issues.find_issues``, which ``label_issues`` wraps, to keep
the out-of-fold probabilities for the accuracies below). This is the full pipeline,
cloned and fitted once per fold by ``cross_val_predict``; the
extractor's on-disk embedding cache (``cache=``, keyed by image content and model) makes
each image embedded once across folds and seeds, so the probabilities are exactly those
of the uncached pipeline (the cache returns the same float32 embeddings the network
computed; the extractor is frozen, so a fold's fit learns nothing from its images).

Reported per task and seed, and as mean and std over the seeds:

- ``top10_share``: the share of flipped images among the top-ranked 10 % (the
  ``n_flipped`` images of lowest self-confidence; target >= 0.8; chance is 0.1);
- ``precision`` and ``recall`` of the flagged set (``issues``) against the flipped images;
- ``n_flagged``; the out-of-fold accuracy against the noisy labels and against the true
  ones (how good the classifier is on this task).

BLAS runs on ``--blas-threads`` threads (1 by default, through threadpoolctl): the
logistic regressions are small, and on a loaded machine several spinning BLAS threads
made each fit 100x slower (80 s instead of 0.5 s for five folds of the regions task).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_label_issues.py
     [--tasks digits regions] [--seeds 0 1 2] [--noise 0.1] [--cv 5] [--image-size 224]
     [--cache DIR] [--blas-threads 1]
Writes benchmarks/results/label_issues.json and label_issues.md. About a minute on one
core with native bf16 (most of it embedding the 2,397 images once).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paths import path_of

RESULTS = Path(__file__).parent / "results"
TARGET = 0.8


# ---------------------------------------------------------------------------- data
def digits_task() -> tuple[np.ndarray, np.ndarray]:
    """All of scikit-learn's digits, 8 x 8 upscaled bilinearly to 64 x 64 RGB."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16 * 255).astype(np.uint8)
    X = np.stack([np.asarray(Image.fromarray(i).resize((64, 64), Image.BILINEAR)
                             .convert("RGB")) for i in images])
    return X, digits.target


def regions_task() -> tuple[np.ndarray, np.ndarray]:
    """600 patches (50 per class) of the two sample photos, 96 px."""
    from sktransfer.datasets import load_region_patches

    return load_region_patches(50, size=96, seed=0)


TASKS = {"digits": digits_task, "regions": regions_task}


def flip(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the labels, drawn at random, each moved to another class at random."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    flipped = np.sort(rng.choice(len(y), round(share * len(y)), replace=False))
    noisy = y.copy()
    for i in flipped:
        others = classes[classes != y[i]]
        noisy[i] = others[rng.integers(len(others))]
    return noisy, flipped


# ---------------------------------------------------------------------------- run
def pipeline(args, cache: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    return Pipeline([
        ("embed", PretrainedFeatureExtractor(efficientnet_lite0(), mean=LITE_MEAN,
                                             std=LITE_STD, image_size=args.image_size,
                                             batch_size=args.batch_size, cache=cache)),
        ("clf", LogisticRegression(max_iter=2000)),
    ])


def run_task(name: str, args, cache: str) -> dict:
    from sktransfer._label_issues import find_issues

    X, y = TASKS[name]()
    rows = []
    for seed in args.seeds:
        noisy, flipped = flip(y, args.noise, seed)
        pipe = pipeline(args, cache)
        start = time.perf_counter()
        # what label_issues(pipe, X, noisy, cv=cv, return_scores=True) computes and
        # returns (found.ranked(), found.self_confidence), with the probabilities kept
        found = find_issues(pipe, X, noisy, args.cv)
        issues, confidence = found.ranked(), found.self_confidence
        seconds = time.perf_counter() - start
        predicted = found.classes[found.proba.argmax(1)]
        top = np.argsort(confidence, kind="stable")[:len(flipped)]
        hits = np.isin(issues, flipped)
        rows.append({
            "seed": seed, "n_images": len(y), "n_classes": len(np.unique(y)),
            "n_flipped": len(flipped), "top10_share": float(np.isin(top, flipped).mean()),
            "n_flagged": len(issues),
            "precision": float(hits.mean()) if len(issues) else float("nan"),
            "recall": float(np.isin(flipped, issues).mean()),
            "accuracy_noisy": float((predicted == noisy).mean()),
            "accuracy_true": float((predicted == y).mean()),
            "seconds": round(seconds, 1),
        })
        print(f"{name} seed {seed}: top-10% share {rows[-1]['top10_share']:.3f}, "
              f"flagged {len(issues)}, precision {rows[-1]['precision']:.3f}, recall "
              f"{rows[-1]['recall']:.3f} ({seconds:.1f} s)", flush=True)
    summary = {key: {"mean": float(np.mean([r[key] for r in rows])),
                     "std": float(np.std([r[key] for r in rows]))}
               for key in ("top10_share", "precision", "recall", "n_flagged",
                           "accuracy_noisy", "accuracy_true")}
    return {"task": name, "runs": rows, "summary": summary,
            "meets_target": bool(all(r["top10_share"] >= TARGET for r in rows))}


def markdown(result: dict) -> str:
    lines = [f"# label_issues: planted label errors ({result['noise']:.0%} flipped)", "",
             f"Machine: {result['machine']}; pipeline EfficientNet-Lite0 (ImageNet weights, "
             f"{result['image_size']} px, path: {result['path']}) + LogisticRegression, "
             f"out-of-fold probabilities with cv={result['cv']}; seeds "
             f"{result['seeds']}; target: top-10 % share >= {TARGET}.", "",
             "| task | images | classes | top-10 % share | flagged | precision | recall | "
             "OOF acc. (noisy / true labels) | meets target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task in result["tasks"]:
        s, run = task["summary"], task["runs"][0]

        def pm(key: str, f: str = ".3f", s: dict = s) -> str:
            return f"{s[key]['mean']:{f}} ± {s[key]['std']:{f}}"

        lines.append(f"| {task['task']} | {run['n_images']} | {run['n_classes']} | "
                     f"{pm('top10_share')} | {pm('n_flagged', '.1f')} | {pm('precision')} | "
                     f"{pm('recall')} | {s['accuracy_noisy']['mean']:.3f} / "
                     f"{s['accuracy_true']['mean']:.3f} | "
                     f"{'yes' if task['meets_target'] else 'no'} |")
    lines += ["", "Per seed:", "", "| task | seed | flipped | top-10 % share | flagged | "
              "precision | recall | seconds |", "|---|---|---|---|---|---|---|---|"]
    for task in result["tasks"]:
        for r in task["runs"]:
            lines.append(f"| {task['task']} | {r['seed']} | {r['n_flipped']} | "
                         f"{r['top10_share']:.3f} | {r['n_flagged']} | {r['precision']:.3f} "
                         f"| {r['recall']:.3f} | {r['seconds']} |")
    lines += ["", f"Total wall time {result['seconds']:.0f} s (embedding included; each "
              "image embedded once thanks to the extractor's cache)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default=None,
                        help="embedding cache folder (default: a temporary one)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads of the logistic regressions (threadpoolctl)")
    parser.add_argument("--output", default="label_issues",
                        help="name of the result files under benchmarks/results/")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary, \
            threadpool_limits(limits=args.blas_threads, user_api="blas"):
        cache = args.cache or temporary
        tasks = [run_task(name, args, cache) for name in args.tasks]
    probe = pipeline(args, cache=None)[0].fit()
    probe.transform(np.zeros((1, 8, 8, 3), np.uint8))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                   f"{args.blas_threads} BLAS thread(s), torch {torch.__version__}",
        "path": path_of(probe.transform_cost_), "noise": args.noise, "cv": args.cv,
        "seeds": args.seeds, "image_size": args.image_size, "target": TARGET,
        "tasks": tasks, "seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.output}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
