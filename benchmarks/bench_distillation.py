"""Knowledge distillation in ``FineTuneClassifier``: does a fine-tuned teacher make a cheaper
student more accurate, with and without extra unlabelled images?

Task: ``sktransfer.datasets.load_region_patches`` (12 classes: a 2 x 3 grid of regions of
each of scikit-learn's two sample photos; patches placed at random inside their region,
flipped and rotated), 128 px: ``--per-class`` labelled training patches per class (seed
1), a pool of ``--pool-per-class`` patches per class whose labels are hidden (seed 3),
20 test patches per class (seed 2). Real ImageNet weights offline: EfficientNet-Lite0
from ``sktransfer.zoo`` (``mean=LITE_MEAN, std=LITE_STD``).

Teacher (fitted once, ``random_state=0``): Lite0 at 128 px, ``unfreeze=2``,
``--teacher-epochs`` epochs, other parameters at their defaults.

Students (``--students``), each fed the same 128 px images (the student's own
``image_size``/``resize_size`` shrink them), ``--epochs`` epochs, otherwise defaults:

- ``lite0@64``: the whole pretrained Lite0 at 64 px (a quarter of the teacher's pixels),
  ``unfreeze=2``;
- ``lite0[:8]@64``: a truncated pretrained Lite0 (its stem and first 8 of 16 MBConv
  blocks, 80 channels at stride 16, then sktransfer's global pooling and linear head)
  at 64 px, ``unfreeze=3`` (the top 3 of its 9 layer groups train).

Conditions per student and seed (``--seeds``, the student's ``random_state``):
``labels`` (no teacher), ``distill`` (``teacher=`` with the defaults
``distill_temperature=2.0, distill_weight=0.5``), ``distill+pool`` (the same plus the
pool, its labels given as ``-1``: those images learn from the teacher alone; an epoch
then passes over labelled + pool images). Reported: test accuracy (mean +- std over
seeds), agreement with the teacher's test predictions, forward FLOPs per image of the
student and the teacher (``inference_flops_`` of the distilled students;
``sktransfer._cost.inference_flops`` for ``labels``), fit seconds.

The teacher's probabilities of the training images (and pool) are computed once, outside
the students' fits (a fit with ``teacher=`` computes them once at its start, so a plain
``fit`` would add them to every run): the script passes a thin wrapper that returns the
precomputed probabilities and forwards everything else to the teacher (so
``inference_flops_`` still counts the teacher's network). The seconds that pass takes
are printed and stored (``teacher_proba_s``): add them to a distilled student's fit
seconds for the cost of a plain ``fit``.

Sweep: ``distill_temperature`` in ``--sweep-T`` x ``distill_weight`` in ``--sweep-w`` on
one student (``--sweep-student``), condition (``--sweep-condition``) and the same seeds;
the default pair's runs are reused from the main grid.

Run: OMP_NUM_THREADS=2 python benchmarks/bench_distillation.py [--seeds 0 1 2]
     [--epochs 8] [--teacher-epochs 8] [--per-class 15] [--pool-per-class 25]
     [--students lite0@64 lite0[:8]@64] [--sweep-student 'lite0[:8]@64']
     [--sweep-condition distill] [--sweep-T 1 2 4] [--sweep-w 0.5 0.9] [--no-sweep]
Writes benchmarks/results/distillation.json after each run (rows, teacher, sweep) and
prints the tables; every run names its arithmetic path (native/emulated bf16, float32).
About 15 minutes on 2 CPU cores (native bf16) with the defaults.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from _paths import path_of

from sktransfer import FineTuneClassifier
from sktransfer._cost import inference_flops
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

TEACHER_SIZE = 128
CONDITIONS = ("labels", "distill", "distill+pool")
DEFAULT_T, DEFAULT_W = 2.0, 0.5


class PrecomputedTeacher:
    """A fitted teacher whose probabilities for some image arrays are already known
    (keyed by content); any other input, and every other attribute, goes to the teacher."""

    def __init__(self, teacher):
        self.teacher = teacher
        self._known: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}

    @staticmethod
    def _key(X: np.ndarray) -> str:
        X = np.ascontiguousarray(X)
        return f"{X.shape}{X.dtype}" + hashlib.sha1(X.data).hexdigest()

    def precompute(self, name: str, X: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        proba = np.asarray(self.teacher.predict_proba(X))
        self.seconds[name] = time.perf_counter() - start
        self._known[self._key(X)] = proba
        return proba

    def predict_proba(self, X):
        if isinstance(X, np.ndarray):
            known = self._known.get(self._key(X))
            if known is not None:
                return known
        return self.teacher.predict_proba(X)

    def __getattr__(self, name):  # classes_, net_, preprocessing_ ... of the teacher
        if name.startswith("__") or name in ("teacher", "_known", "seconds"):
            raise AttributeError(name)
        return getattr(self.teacher, name)


def truncated_lite0(n_blocks: int) -> nn.Module:
    """Pretrained Lite0's stem and first ``n_blocks`` MBConv blocks, as a Sequential
    (sktransfer pools its last feature map and puts its own head on it)."""
    full = efficientnet_lite0()
    return nn.Sequential(copy.deepcopy(full._conv_stem), copy.deepcopy(full._bn0), nn.ReLU6(),
                         *[copy.deepcopy(b) for b in list(full._blocks)[:n_blocks]])


STUDENTS = {
    # name: (network factory, image size, unfreeze)
    "lite0@64": (efficientnet_lite0, 64, 2),
    "lite0[:8]@64": (lambda: truncated_lite0(8), 64, 3),
}


def data(args):
    Xtr, ytr = load_region_patches(args.per_class, size=TEACHER_SIZE, seed=1)
    Xpool, ypool = load_region_patches(args.pool_per_class, size=TEACHER_SIZE, seed=3)
    Xte, yte = load_region_patches(20, size=TEACHER_SIZE, seed=2)
    return Xtr, ytr, Xpool, ypool, Xte, yte


def fit_teacher(args, Xtr, ytr, Xte, yte):
    clf = FineTuneClassifier(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                             image_size=TEACHER_SIZE, resize_size=TEACHER_SIZE, unfreeze=2,
                             max_epochs=args.teacher_epochs, random_state=0)
    start = time.perf_counter()
    clf.fit(Xtr, ytr)
    fit_s = time.perf_counter() - start
    pred = clf.predict(Xte)
    return clf, pred, {"accuracy": float(np.mean(pred == yte)), "fit_s": fit_s,
                       "flops": inference_flops(clf), "path": path_of(clf.fit_cost_),
                       "unfreeze": 2, "image_size": TEACHER_SIZE,
                       "epochs": args.teacher_epochs}


def run(student: str, condition: str, seed: int, T: float, w: float, teacher, d, args):
    Xtr, ytr, Xpool, _, Xte, yte = d["data"]
    factory, size, unfreeze = STUDENTS[student]
    kwargs = {}
    X, y = Xtr, ytr
    if condition != "labels":
        kwargs = {"teacher": teacher, "distill_temperature": T, "distill_weight": w}
    if condition == "distill+pool":
        X = np.concatenate([Xtr, Xpool])
        y = np.concatenate([ytr, np.full(len(Xpool), -1, dtype=ytr.dtype)])
    clf = FineTuneClassifier(factory(), mean=LITE_MEAN, std=LITE_STD, image_size=size,
                             resize_size=size, unfreeze=unfreeze, max_epochs=args.epochs,
                             random_state=seed, **kwargs)
    start = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - start
    pred = clf.predict(Xte)
    if condition == "labels":
        flops = {"student": inference_flops(clf), "teacher": None}
    else:
        flops = dict(clf.inference_flops_)
        assert flops["student"] == inference_flops(clf), (flops, inference_flops(clf))
    return {"student": student, "condition": condition, "seed": seed,
            "distill_temperature": T if condition != "labels" else None,
            "distill_weight": w if condition != "labels" else None,
            "accuracy": float(np.mean(pred == yte)),
            "agreement_with_teacher": float(np.mean(pred == d["teacher_pred"])),
            "student_flops": flops["student"], "teacher_flops": flops["teacher"],
            "fit_s": fit_s, "n_fit_images": len(X), "image_size": size,
            "unfreeze": unfreeze, "epochs": args.epochs, "path": path_of(clf.fit_cost_)}


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} +- {v.std():.3f}"


def mflops(f) -> str:
    return "-" if f is None else f"{f / 1e6:.0f}"


def print_tables(result: dict, args) -> None:
    t = result["teacher"]
    print(f"\nteacher Lite0@{t['image_size']} unfreeze={t['unfreeze']}: test accuracy "
          f"{t['accuracy']:.3f}, {mflops(t['flops'])} MFLOPs/image, fit {t['fit_s']:.0f}s "
          f"({t['path']}); its probabilities: " + ", ".join(
              f"{k} {v:.1f}s" for k, v in result["teacher_proba_s"].items()))
    print(f"\n{'student':14s} {'condition':13s} {'accuracy':>15s} {'agree w/ T':>15s} "
          f"{'MFLOPs S/T':>11s} {'fit s':>6s}  n")
    main = [r for r in result["rows"] if r.get("sweep") is not True]
    for s in args.students:
        for c in CONDITIONS:
            rows = [r for r in main if r["student"] == s and r["condition"] == c]
            if not rows:
                continue
            print(f"{s:14s} {c:13s} {mean_std([r['accuracy'] for r in rows]):>15s} "
                  f"{mean_std([r['agreement_with_teacher'] for r in rows]):>15s} "
                  f"{mflops(rows[0]['student_flops']):>5s}/{mflops(t['flops']):<5s} "
                  f"{np.mean([r['fit_s'] for r in rows]):6.0f}  {len(rows)}")
    sweep = [r for r in result["rows"] if r["student"] == args.sweep_student
             and r["condition"] == args.sweep_condition]
    if args.sweep and sweep:
        print(f"\nsweep: {args.sweep_student}, {args.sweep_condition}, test accuracy "
              "(mean +- std over seeds)")
        print("T \\ w " + "".join(f"{w:>17g}" for w in args.sweep_w))
        best = None
        for T in args.sweep_T:
            cells = []
            for w in args.sweep_w:
                rows = [r for r in sweep if r["distill_temperature"] == T
                        and r["distill_weight"] == w]
                cells.append(mean_std([r["accuracy"] for r in rows]) if rows else "-")
                if rows:
                    m = np.mean([r["accuracy"] for r in rows])
                    if best is None or m > best[0]:
                        best = (m, T, w)
            print(f"{T:<6g}" + "".join(f"{c:>17s}" for c in cells))
        if best:
            print(f"best: T={best[1]:g}, w={best[2]:g} ({best[0]:.3f}); defaults T="
                  f"{DEFAULT_T:g}, w={DEFAULT_W:g}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=15)
    parser.add_argument("--pool-per-class", type=int, default=25)
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS),
                        choices=CONDITIONS)
    parser.add_argument("--sweep-student", default="lite0[:8]@64", choices=STUDENTS)
    parser.add_argument("--sweep-condition", default="distill",
                        choices=["distill", "distill+pool"])
    parser.add_argument("--sweep-T", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--sweep-w", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--no-sweep", dest="sweep", action="store_false")
    parser.add_argument("--output", default="distillation.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # small-data warnings of every fit
    out = Path(__file__).parent / "results" / args.output
    out.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()

    Xtr, ytr, Xpool, ypool, Xte, yte = data(args)
    teacher, teacher_pred, teacher_info = fit_teacher(args, Xtr, ytr, Xte, yte)
    cached = PrecomputedTeacher(teacher)
    cached.precompute("train", Xtr)
    pool_proba = cached.precompute("train+pool", np.concatenate([Xtr, Xpool]))[len(Xtr):]
    teacher_info["pool_accuracy"] = float(np.mean(teacher.classes_[pool_proba.argmax(1)]
                                                  == ypool))
    d = {"data": (Xtr, ytr, Xpool, ypool, Xte, yte), "teacher_pred": teacher_pred}
    result = {"config": vars(args), "teacher": teacher_info,
              "teacher_proba_s": cached.seconds, "rows": []}
    print(f"teacher: test accuracy {teacher_info['accuracy']:.3f}, pool accuracy "
          f"{teacher_info['pool_accuracy']:.3f}, fit {teacher_info['fit_s']:.0f}s", flush=True)

    def record(row):
        result["rows"].append(row)
        result["total_s"] = time.perf_counter() - t0
        out.write_text(json.dumps(result, indent=1))  # kept if a later run fails
        T, w = row["distill_temperature"], row["distill_weight"]
        knobs = "" if T is None else f" T={T:g} w={w:g}"
        print(f"{row['student']:14s} {row['condition']:13s}{knobs} seed={row['seed']} "
              f"acc={row['accuracy']:.3f} agree={row['agreement_with_teacher']:.3f} "
              f"({row['fit_s']:.0f}s, {row['path']})", flush=True)

    for student in args.students:
        for condition in args.conditions:
            for seed in args.seeds:
                record(run(student, condition, seed, DEFAULT_T, DEFAULT_W, cached, d, args))
    if args.sweep:
        for T in args.sweep_T:
            for w in args.sweep_w:
                for seed in args.seeds:
                    done = any(r["student"] == args.sweep_student and r["seed"] == seed
                               and r["condition"] == args.sweep_condition
                               and r["distill_temperature"] == T and r["distill_weight"] == w
                               for r in result["rows"])
                    if not done:
                        row = run(args.sweep_student, args.sweep_condition, seed, T, w,
                                  cached, d, args)
                        record({**row, "sweep": True})
    result["total_s"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=1))
    print_tables(result, args)
    print(f"\ntotal {result['total_s']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
