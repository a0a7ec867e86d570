"""ONNX export (``sktransfer.deploy.export_onnx``): predict speed, file sizes, int8 accuracy.

Two models, both EfficientNet-Lite0 with its real ImageNet weights (``sktransfer.zoo.
efficientnet_lite0``, ``mean=LITE_MEAN, std=LITE_STD``, ``--image-size`` 224 px):

lite0+logreg
    ``make_pipeline(PretrainedFeatureExtractor(efficientnet_lite0(), ...),
    LogisticRegression(max_iter=3000))``, fitted on each task's training images.
lite0 fine-tuned
    ``FineTuneClassifier(efficientnet_lite0(), ..., unfreeze=--unfreeze,
    max_epochs=--epochs, random_state=0)`` (defaults 2 and 3: one epoch training the head
    alone, then two with the top two layer groups as well), fitted on the regions task's
    training images (``--finetune-tasks`` adds digits).

Each is exported with ``export_onnx``: float32 and int8 (``quantize="int8"``, static,
calibrated on ``--n-calibration`` training images drawn at random, seed 0), each with
``resize=True`` (the graph resizes the shorter side and centre-crops, taking the images
as decoded) and, for the speed part, without it (the graph takes crops the app made).

speed (``--part speed``; the regions models)
    Predicted labels for ``--n-speed`` uint8 RGB crops of scikit-learn's sample photos,
    ``--speed-size`` H W (default 240 x 320, so every image is resized and cropped), in
    batches of ``--batch-size`` (32), on the CPU, by:

    - library: the estimator's own default ``predict`` (``precision="auto"``: native bf16
      on a CPU with bfloat16 instructions, else float32; its path is named), which
      resizes and crops with torch;
    - onnx float32 / onnx int8: ``InferenceSession(<resize=True graph>).run(["label"],
      {"images": batch})`` on the same uint8 arrays, so that the graph also does the
      resize and crop: both sides do the same work, pixels to labels;
    - onnx float32 / int8, app-cropped: the graphs without resize, on the same images
      resized and cropped beforehand with the graph's metadata (``read_onnx_metadata``;
      that preparation is not timed): the network and the head alone.

    onnxruntime's CPU provider, ``intra_op_num_threads`` = torch's thread count
    (``--threads``, default torch's), ``inter_op_num_threads=1``, default graph
    optimisations. One warm-up call each, then ``--rounds`` rounds in which each side runs
    once over all the images, the order rotating from round to round, so drifting load
    hits all alike. images/s from the best round (the median's ratios are given too).
    Label agreement with the library on these images is reported.

sizes
    The ``.onnx`` files (float32 and int8, resize=True and app-cropped) and
    ``joblib.dump`` of the fitted estimator, in MB (10^6 bytes), and the seconds each
    export took (int8: calibration included).

accuracy (``--part accuracy``)
    Two real tasks: sklearn's digits (8 x 8 upscaled bilinearly to 64 x 64 RGB; the first
    600 images train, the next 900 test) and ``sktransfer.datasets.load_region_patches``
    (train: 25 per class, seed 1; test: 50 per class, seed 2; 160 px; 12 classes). For
    lite0+logreg on both, and the fine-tuned model on regions: test accuracy of the
    library's default predict, of the library in float32, of the onnx float32 graph and
    of the int8 graph (resize=True, fed the test images as they are), label agreement of
    onnx float32 with the library (default and float32) and of int8 with onnx float32.

Targets (printed pass/fail), on a CPU with int8 dot products (``/proc/cpuinfo`` flags
avx512_vnni, avx_vnni, amx_int8; Arm asimddp, i8mm; detected and printed, and elsewhere
the speed target is reported as not applicable):

- speed: onnx int8 (resize=True) >= 1.3x the images/s of the library's default predict;
- accuracy: int8 loses <= 0.5 points of test accuracy against the better of the library's
  default predict and onnx float32.

Where a target is missed (or with ``--profile``): for speed, onnxruntime's profiler
(``SessionOptions.enable_profiling``) on the float32 and int8 graphs, kernel time per op
type in ms per image (first call excluded) and node counts, summed per group
(convolutions and matrix products, quantise/dequantise, layout changes, resize, other),
beside the ms per image int8 would need to meet the target; for accuracy, the per-layer
error of the int8 graph (``onnxruntime.quantization.qdq_loss_debug``, on 4 test images):
the signal-to-quantisation-noise ratio (dB) of each quantised tensor against the float32
graph's, along the network and the lowest first.

``--quick``: tiny images, data and rounds, two epochs (it overrides the size flags);
checks that the script runs, its figures mean nothing (written to ``onnx_quick.json``
and ``.md``).

Run: .venv/bin/python benchmarks/bench_onnx.py [--part speed|accuracy|all] [--quick]
Writes benchmarks/results/onnx.json and onnx.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import path_of

SPEED_TARGET = 1.3  # int8 images/s over the library's default predict
LOSS_TARGET = 0.5  # accuracy points int8 may lose
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
PIPELINE, FINETUNED = "lite0+logreg", "lite0 fine-tuned"
# op types of onnxruntime's optimised CPU graphs, grouped to explain a profile
OP_GROUPS = {
    "convolutions and matrix products": {
        "Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "QLinearConv", "ConvInteger",
        "Gemm", "FusedGemm", "QGemm", "MatMul", "MatMulInteger", "QLinearMatMul",
        "MatMulIntegerToFloat", "FusedMatMul"},
    "quantise / dequantise": {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"},
    "layout changes": {"Transpose", "ReorderInput", "ReorderOutput"},
    "resize": {"Resize"},
}


# ---------------------------------------------------------------------------- machine
def int8_dot_products() -> list[str] | None:
    """This CPU's int8 dot-product features from /proc/cpuinfo (None: unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return [f for f in INT8_FLAGS if f in flags]


# ---------------------------------------------------------------------------- data
def digits_task(n_train: int, n_test: int):
    """sklearn's digits, 8 x 8 upscaled to 64 x 64 RGB: first n_train, next n_test."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16 * 255).astype(np.uint8)
    X = np.stack([np.asarray(Image.fromarray(i).resize((64, 64), Image.BILINEAR)
                             .convert("RGB")) for i in images[: n_train + n_test]])
    y = digits.target[: n_train + n_test]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def regions_task(per_class_train: int, per_class_test: int, size: int):
    """load_region_patches: train seed 1, test seed 2."""
    from sktransfer.datasets import load_region_patches

    X_train, y_train = load_region_patches(per_class_train, size=size, seed=1)
    X_test, y_test = load_region_patches(per_class_test, size=size, seed=2)
    return X_train, y_train, X_test, y_test


def photo_crops(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n uint8 (height, width) crops at random places of sklearn's two sample photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        if height > photo.shape[0] or width > photo.shape[1]:
            raise SystemExit(f"--speed-size {height} {width} exceeds the sample photos "
                             f"({photo.shape[0]} x {photo.shape[1]})")
        r = rng.integers(0, photo.shape[0] - height + 1)
        c = rng.integers(0, photo.shape[1] - width + 1)
        out[i] = photo[r : r + height, c : c + width]
    return out


def app_cropped(X: np.ndarray, graph: Path) -> np.ndarray:
    """``X`` resized and centre-cropped as the graph's metadata tells an app to."""
    from torchvision.transforms import InterpolationMode

    from sktransfer.deploy import read_onnx_metadata
    from sktransfer.images import Preprocessing

    meta = read_onnx_metadata(graph)["preprocessing"]
    prep = Preprocessing(meta["resize_size"], meta["crop_size"],
                         interpolation=InterpolationMode(meta["interpolation"]))
    batch = prep.resize_crop(torch.from_numpy(X).permute(0, 3, 1, 2))
    return batch.permute(0, 2, 3, 1).contiguous().numpy()


# ---------------------------------------------------------------------------- models
def lite0_pipeline(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    return make_pipeline(
        PretrainedFeatureExtractor(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                                   image_size=args.image_size, batch_size=args.batch_size),
        LogisticRegression(max_iter=3000))


def lite0_finetuned(args):
    from sktransfer import FineTuneClassifier
    from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

    return FineTuneClassifier(efficientnet_lite0(), mean=LITE_MEAN, std=LITE_STD,
                              unfreeze=args.unfreeze, max_epochs=args.epochs,
                              image_size=args.image_size, batch_size=args.batch_size,
                              random_state=0)


def library_path(estimator) -> str:
    """The arithmetic path the estimator's predict ran in."""
    if hasattr(estimator, "steps"):
        return path_of(estimator.steps[0][1].transform_cost_)
    return path_of(str(estimator.net_.device), estimator.precision)


def set_precision(estimator, precision: str) -> None:
    """Set the precision the estimator (or its pipeline's extractor) predicts in."""
    target = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    target.set_params(precision=precision)


def export_models(estimator, X_train, name: str, folder: Path, args, cropped: bool) -> dict:
    """float32 and int8 graphs (resize=True; also without resize if ``cropped``), the
    joblib file, their sizes (MB) and the export times (s)."""
    import joblib

    from sktransfer.deploy import export_onnx

    rng = np.random.default_rng(0)
    n_cal = min(args.n_calibration, len(X_train))
    calibration = X_train[np.sort(rng.choice(len(X_train), n_cal, replace=False))]
    stem = name.replace(" ", "_").replace("+", "_")
    variants = [("float32", True), ("int8", True)]
    if cropped:
        variants += [("float32 cropped", False), ("int8 cropped", False)]
    paths, seconds = {}, {}
    for kind, resize in variants:
        path = folder / f"{stem}_{kind.replace(' ', '_')}.onnx"
        options = ({"quantize": "int8", "calibration": calibration}
                   if kind.startswith("int8") else {})
        start = time.perf_counter()
        export_onnx(estimator, path, resize=resize, **options)
        seconds[kind] = round(time.perf_counter() - start, 1)
        paths[kind] = path
    paths["joblib"] = folder / f"{stem}.joblib"
    joblib.dump(estimator, paths["joblib"])
    sizes = {k: round(p.stat().st_size / 1e6, 2) for k, p in paths.items()}
    return {"paths": paths, "sizes_mb": sizes, "export_s": seconds,
            "n_calibration": n_cal}


# ---------------------------------------------------------------------------- onnx
def session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(sess, X: np.ndarray, batch_size: int) -> np.ndarray:
    """Labels from the graph, ``batch_size`` images per call."""
    return np.concatenate([sess.run(["label"], {"images": X[s : s + batch_size]})[0]
                           for s in range(0, len(X), batch_size)])


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def speed(estimator, graphs: dict, X: np.ndarray, args) -> dict:
    """images/s of the library's predict and of each graph, alternating rounds."""
    threads = torch.get_num_threads()
    Xc = app_cropped(X, graphs["float32 cropped"])
    sides = {"library": lambda: estimator.predict(X)}
    for kind in ("float32", "int8", "float32 cropped", "int8 cropped"):
        sess = session(graphs[kind], threads)
        images = Xc if kind.endswith("cropped") else X
        sides[f"onnx {kind}"] = (lambda s=sess, x=images: onnx_predict(s, x, args.batch_size))
    names = list(sides)
    labels = {name: fn() for name, fn in sides.items()}  # warm-up; the labels compared
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_timed(sides[name])[0])
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    n = len(X)
    return {
        "n_images": n, "image_size": list(X.shape[1:3]), "batch_size": args.batch_size,
        "threads": threads, "library_path": library_path(estimator),
        "img_s": {k: round(n / v, 2) for k, v in best.items()},
        "img_s_median": {k: round(n / v, 2) for k, v in median.items()},
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "speedup_vs_library": {k: round(best["library"] / v, 3) for k, v in best.items()},
        "speedup_vs_library_median": {k: round(median["library"] / v, 3)
                                      for k, v in median.items()},
        "int8_speedup_vs_float32": {
            "resize in graph": round(best["onnx float32"] / best["onnx int8"], 3),
            "app-cropped": round(best["onnx float32 cropped"] / best["onnx int8 cropped"], 3)},
        "label_agreement_with_library": {
            k: round(float(np.mean(v == labels["library"])), 4) for k, v in labels.items()},
    }


# ---------------------------------------------------------------------------- profiles
def op_profile(path: Path, X: np.ndarray, args, folder: Path) -> dict:
    """Kernel time per op type (ms per image) from onnxruntime's profiler, the first
    call (initialisation, weight pre-packing) excluded; node counts per op type."""
    n_batches = 1 + args.profile_batches
    batches = [X[s : s + args.batch_size]
               for s in range(0, min(len(X), n_batches * args.batch_size), args.batch_size)]
    sess = session(path, torch.get_num_threads(), str(folder / f"profile_{path.stem}"))
    for batch in batches:
        sess.run(["label"], {"images": batch})
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after = runs[0]["ts"] + runs[0]["dur"] if len(runs) > 1 else 0
    counted = runs[1:] or runs
    n_images = sum(len(b) for b in (batches[1:] if len(runs) > 1 else batches))
    time_us, count = Counter(), Counter()
    for e in events:
        if (e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
                and e["ts"] >= after):
            op = e.get("args", {}).get("op_name", "?")
            time_us[op] += e["dur"]
            count[op] += 1
    return {"ms_per_image": {op: round(us / 1e3 / n_images, 3)
                             for op, us in time_us.most_common()},
            "nodes": {op: c // len(counted) for op, c in count.items()},
            "run_ms_per_image": round(sum(r["dur"] for r in counted) / 1e3 / n_images, 3),
            "images": n_images}


def profile_groups(profile: dict) -> dict:
    """A profile's ms per image summed per group of op types (OP_GROUPS, then "other")."""
    groups = dict.fromkeys([*OP_GROUPS, "other"], 0.0)
    for op, ms in profile["ms_per_image"].items():
        group = next((g for g, ops in OP_GROUPS.items() if op in ops), "other")
        groups[group] += ms
    return {g: round(ms, 3) for g, ms in groups.items()}


def layer_errors(float_graph: Path, int8_graph: Path, X: np.ndarray, folder: Path,
                 n_worst: int = 6) -> dict:
    """SQNR (dB) of each quantised tensor of the int8 graph against the float32 graph's
    tensor of the same name: the error accumulated up to there, in graph order and the
    worst first. (The quantiser's own pre/post-QDQ comparison is not used: where it
    removed a ReLU6 whose range its uint8 range covers, the tensor before the QDQ pair is
    the pre-activation, so that comparison counts the activation as noise.)"""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"images": X}])

        def get_next(self):
            return next(self.items, None)

    activations = {}
    for kind, graph in (("float", float_graph), ("int8", int8_graph)):
        augmented = folder / f"augmented_{graph.name}"
        modify_model_output_intermediate_tensors(graph, augmented)
        activations[kind] = collect_activations(str(augmented), Reader())
        augmented.unlink()
    matched = create_activation_matching(activations["int8"], activations["float"])
    for match in matched.values():
        match.setdefault("float", [])  # a name the float32 graph lacks: no cross-model error
    errors = compute_activation_error(matched)
    order = [o for node in onnx.load(int8_graph, load_external_data=False).graph.node
             for o in node.output]
    by_layer = [[name, round(float(errors[name]["xmodel_err"]), 2)] for name in order
                if "xmodel_err" in errors.get(name, {})]
    return {"images": len(X), "tensors_quantised": len(errors),
            "matched_with_float": len(by_layer), "by_layer_db": by_layer,
            "worst_db": sorted(by_layer, key=lambda x: x[1])[:n_worst]}


# ---------------------------------------------------------------------------- accuracy
def accuracy(estimator, graphs: dict, X_test, y_test, args) -> dict:
    threads = torch.get_num_threads()
    lib = estimator.predict(X_test)
    path = library_path(estimator)
    set_precision(estimator, "float32")
    try:
        lib32 = estimator.predict(X_test)
    finally:
        set_precision(estimator, "auto")
    fp32 = onnx_predict(session(graphs["float32"], threads), X_test, args.batch_size)
    int8 = onnx_predict(session(graphs["int8"], threads), X_test, args.batch_size)
    acc = {name: float(np.mean(pred == y_test)) for name, pred in
           (("library", lib), ("library float32", lib32), ("onnx float32", fp32),
            ("onnx int8", int8))}
    reference = max(acc["library"], acc["onnx float32"])
    lost = 100 * (reference - acc["onnx int8"])
    return {"n_test": len(y_test), "library_path": path,
            "accuracy": {k: round(v, 4) for k, v in acc.items()},
            "agreement": {
                "onnx float32 vs library": round(float(np.mean(fp32 == lib)), 4),
                "onnx float32 vs library float32": round(float(np.mean(fp32 == lib32)), 4),
                "onnx int8 vs onnx float32": round(float(np.mean(int8 == fp32)), 4)},
            "points_lost": round(lost, 2), "met": bool(lost <= LOSS_TARGET)}


# ---------------------------------------------------------------------------- run
def _log(message: str) -> None:
    print(f"[bench_onnx] {message}", flush=True)


def run(args, folder: Path) -> dict:
    quick = args.quick
    tasks = {"regions": lambda: regions_task(*((2, 2, 64) if quick else (25, 50, 160)))}
    if args.part != "speed":
        tasks["digits"] = lambda: digits_task(*((24, 24) if quick else (600, 900)))
    models: dict[str, dict] = {}
    accuracy_rows, profiles = [], {}
    for task, load in tasks.items():
        X_train, y_train, X_test, y_test = load()
        builders = {PIPELINE: lite0_pipeline}
        timed = task == "regions" and args.part != "accuracy"
        if timed or task in args.finetune_tasks:
            builders[FINETUNED] = lite0_finetuned
        for name, build in builders.items():
            _log(f"{task}: fitting {name} on {len(X_train)} images")
            start = time.perf_counter()
            estimator = build(args).fit(X_train, y_train)
            fit_s = round(time.perf_counter() - start, 1)
            _log(f"{task}: exporting {name} (fit took {fit_s} s)")
            exported = export_models(estimator, X_train, f"{task} {name}", folder, args,
                                     cropped=timed)
            graphs = exported["paths"]
            if task == "regions":
                models[name] = {"fit_s": fit_s, "train": f"regions, {len(X_train)} images",
                                **{k: v for k, v in exported.items() if k != "paths"}}
            if args.part != "speed" and (name == PIPELINE or task in args.finetune_tasks):
                _log(f"{task}: accuracy of {name}")
                row = {"task": task, "model": name, "n_train": len(X_train),
                       **accuracy(estimator, graphs, X_test, y_test, args)}
                if args.profile or not row["met"]:
                    _log(f"{task}: per-layer error of {name}'s int8 graph")
                    try:
                        row["layer_errors"] = layer_errors(graphs["float32"], graphs["int8"],
                                                           X_test[:4], folder)
                    except Exception as exc:  # a diagnosis only: say why it failed
                        row["layer_errors"] = {"error": f"{type(exc).__name__}: {exc}"}
                accuracy_rows.append(row)
            if timed:
                X_speed = photo_crops(args.n_speed, *args.speed_size)
                _log(f"speed of {name}: {args.rounds} rounds of {len(X_speed)} images")
                result = speed(estimator, graphs, X_speed, args)
                models[name]["speed"] = result
                if args.profile or result["speedup_vs_library"]["onnx int8"] < SPEED_TARGET:
                    _log(f"profiling {name}'s float32 and int8 graphs")
                    profiles[name] = {kind: op_profile(graphs[kind], X_speed, args, folder)
                                      for kind in ("float32", "int8")}
                    profiles[name]["groups"] = {kind: profile_groups(profiles[name][kind])
                                                for kind in ("float32", "int8")}
                    profiles[name]["needed_int8_ms_per_image"] = round(
                        1e3 / (SPEED_TARGET * result["img_s"]["library"]), 3)
            del estimator
    return {"models": models, "accuracy": accuracy_rows, "profiles": profiles}


def targets(result: dict) -> list[dict]:
    rows = []
    for name, model in result["models"].items():
        if "speed" in model:
            s = model["speed"]
            ratio = s["speedup_vs_library"]["onnx int8"]
            rows.append({"what": f"{name}: onnx int8 (resize in graph) vs library predict "
                                 f"({s['library_path']})", "kind": "speed",
                         "path": f"sktransfer: {s['library_path']}, onnxruntime: int8",
                         "measured": f"{s['img_s']['onnx int8']:.1f} vs "
                                     f"{s['img_s']['library']:.1f} img/s",
                         "value": f"{ratio:.2f}x", "target": f">= {SPEED_TARGET}x",
                         "met": ratio >= SPEED_TARGET})
    for row in result["accuracy"]:
        acc = row["accuracy"]
        rows.append({"what": f"{row['model']} on {row['task']}: int8 accuracy lost",
                     "kind": "accuracy", "path": "onnxruntime int8 vs float32 and "
                                                 f"sktransfer {row['library_path']}",
                     "measured": f"int8 {acc['onnx int8']:.4f}, library "
                                 f"{acc['library']:.4f}, onnx float32 "
                                 f"{acc['onnx float32']:.4f}",
                     "value": f"{row['points_lost']:+.2f} points",
                     "target": f"<= {LOSS_TARGET} points", "met": row["met"]})
    return rows


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']}",
             f"int8 dot products: {result['int8_dot_products_text']}; onnxruntime "
             f"{result['onnxruntime']}, {result['threads']} thread(s) on both sides"
             + (" (--quick: figures mean nothing)" if result["quick"] else ""), ""]
    for name, model in result["models"].items():
        sizes, export_s = model["sizes_mb"], model["export_s"]
        lines.append(f"{name} ({model['train']}, fit {model['fit_s']} s): files "
                     + ", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items())
                     + "; export " + ", ".join(f"{k} {v} s" for k, v in export_s.items())
                     + f" (int8 calibrated on {model['n_calibration']} images)")
    for name, model in result["models"].items():
        s = model.get("speed")
        if not s:
            continue
        lines += ["", f"Predict, {name}: {s['n_images']} images of {s['image_size'][0]} x "
                  f"{s['image_size'][1]}, batch {s['batch_size']}, {s['threads']} thread(s), "
                  f"best of {len(s['seconds']['library'])} rounds", "",
                  "| side | img/s | vs library | vs library (medians) | labels = library "
                  "| path |", "|---|---|---|---|---|---|"]
        for side, img_s in s["img_s"].items():
            path = s["library_path"] if side == "library" else (
                "onnxruntime int8" if "int8" in side else "onnxruntime float32")
            label = side + (" (resize in graph)" if side in ("onnx float32", "onnx int8")
                            else " (app-cropped, crop not timed)" if "cropped" in side else
                            " (default predict)")
            lines.append(f"| {label} | {img_s:.1f} | {s['speedup_vs_library'][side]:.2f}x | "
                         f"{s['speedup_vs_library_median'][side]:.2f}x | "
                         f"{s['label_agreement_with_library'][side]:.3f} | {path} |")
        lines += ["", "onnx int8 vs onnx float32: " + ", ".join(
            f"{k} {v:.2f}x" for k, v in s["int8_speedup_vs_float32"].items())]
    if result["accuracy"]:
        lines += ["", "| task | model | n test | library | library float32 | onnx float32 "
                  "| onnx int8 | float32 = library | float32 = library float32 "
                  "| int8 = float32 | points lost |", "|---|---|---|---|---|---|---|---|---|"
                  "---|---|"]
        for row in result["accuracy"]:
            acc, agree = row["accuracy"], row["agreement"]
            lines.append(
                f"| {row['task']} | {row['model']} | {row['n_test']} | {acc['library']:.4f} "
                f"({row['library_path']}) | {acc['library float32']:.4f} | "
                f"{acc['onnx float32']:.4f} | {acc['onnx int8']:.4f} | "
                f"{agree['onnx float32 vs library']:.3f} | "
                f"{agree['onnx float32 vs library float32']:.3f} | "
                f"{agree['onnx int8 vs onnx float32']:.3f} | {row['points_lost']:+.2f} |")
    lines += ["", "| target | measured | value | target | met |", "|---|---|---|---|---|"]
    lines += [f"| {t['what']} | {t['measured']} | {t['value']} | {t['target']} | "
              f"{'yes' if t['met'] else 'NO'} |" for t in result["targets"]]
    if not result["int8_dot_products"]:
        lines.append("(no int8 dot-product instructions detected: the speed target does "
                     "not apply to this CPU)")
    for name, profile in result["profiles"].items():
        f32, i8 = profile["float32"], profile["int8"]
        groups = profile["groups"]
        ops = sorted(set(f32["ms_per_image"]) | set(i8["ms_per_image"]),
                     key=lambda op: -max(f32["ms_per_image"].get(op, 0),
                                         i8["ms_per_image"].get(op, 0)))
        lines += ["", f"Profile, {name} (onnxruntime profiler, resize in graph, "
                  f"{i8['images']} images after one warm-up call): whole run "
                  f"{f32['run_ms_per_image']:.2f} ms/image float32, "
                  f"{i8['run_ms_per_image']:.2f} int8; library "
                  f"{1e3 / model_speed(result, name):.2f} ms/image (predict, resize "
                  f"included); the target needs int8 at <= "
                  f"{profile['needed_int8_ms_per_image']:.2f} ms/image.",
                  "Kernel time per image, float32 -> int8: " + "; ".join(
                      f"{g} {groups['float32'][g]:.2f} -> {groups['int8'][g]:.2f} ms"
                      for g in groups["float32"]) + ".", "",
                  "| op type | float32 ms/img | nodes | int8 ms/img | nodes |",
                  "|---|---|---|---|---|"]
        for op in ops:
            lines.append(f"| {op} | {f32['ms_per_image'].get(op, 0):.3f} | "
                         f"{f32['nodes'].get(op, 0)} | {i8['ms_per_image'].get(op, 0):.3f} | "
                         f"{i8['nodes'].get(op, 0)} |")
    for row in result["accuracy"]:
        errors = row.get("layer_errors")
        if not errors:
            continue
        lines += ["", f"Per-layer error, {row['model']} on {row['task']} (int8 graph):"]
        if "error" in errors:
            lines.append(f"could not be computed: {errors['error']}")
            continue
        by_layer = errors["by_layer_db"]
        lines += [f"{errors['tensors_quantised']} quantised tensors, "
                  f"{errors['matched_with_float']} matched in the float32 graph, on "
                  f"{errors['images']} test images; SQNR vs float32 (dB, higher is better).",
                  "Lowest: " + ", ".join(f"{n} {v}" for n, v in errors["worst_db"]),
                  "Along the network (every 8th, then the last): " + ", ".join(
                      f"{n} {v}" for n, v in by_layer[::8] + by_layer[-1:])]
    return "\n".join(lines) + "\n"


def model_speed(result: dict, name: str) -> float:
    return result["models"][name]["speed"]["img_s"]["library"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "accuracy", "all"], default="all")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: a smoke run whose figures mean nothing")
    parser.add_argument("--n-speed", type=int, default=256, help="images timed")
    parser.add_argument("--speed-size", type=int, nargs=2, default=[240, 320],
                        metavar=("H", "W"), help="size of the timed images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads, and onnxruntime's (default: torch's)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning max_epochs")
    parser.add_argument("--unfreeze", type=int, default=2, help="fine-tuning unfreeze")
    parser.add_argument("--finetune-tasks", nargs="*", choices=["regions", "digits"],
                        default=["regions"], help="tasks whose accuracy the fine-tuned "
                                                  "model is measured on")
    parser.add_argument("--n-calibration", type=int, default=300,
                        help="training images the int8 ranges are calibrated on")
    parser.add_argument("--profile", action="store_true",
                        help="profile and measure per-layer error even where targets are met")
    parser.add_argument("--profile-batches", type=int, default=4,
                        help="batches profiled after one warm-up call")
    parser.add_argument("--model-dir", default=None,
                        help="keep the exported graphs here (default: a temporary folder)")
    parser.add_argument("--out", default=None,
                        help="JSON path (default benchmarks/results/onnx.json, "
                             "onnx_quick.json with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_speed, args.speed_size, args.rounds = 8, [48, 64], 1
        args.image_size, args.epochs, args.n_calibration = 32, 2, 8
        args.profile_batches, args.batch_size = 1, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or ("benchmarks/results/onnx_quick.json" if args.quick
                            else "benchmarks/results/onnx.json"))
    import onnxruntime as ort

    flags = int8_dot_products()
    flags_text = ("unknown (no /proc/cpuinfo)" if flags is None
                  else ", ".join(flags) or "none")
    machine = (f"{platform.machine()} {platform.processor() or ''}".strip()
               + f", {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    _log(f"int8 dot products: {flags_text}; {torch.get_num_threads()} thread(s)")
    start = time.perf_counter()
    if args.model_dir:
        folder = Path(args.model_dir)
        folder.mkdir(parents=True, exist_ok=True)
        measured = run(args, folder)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_onnx-") as tmp:
            measured = run(args, Path(tmp))
    result = {"machine": machine, "onnxruntime": ort.__version__,
              "threads": torch.get_num_threads(), "int8_dot_products": flags,
              "int8_dot_products_text": flags_text, "quick": args.quick,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              **measured, "wall_s": round(time.perf_counter() - start, 1)}
    result["targets"] = targets(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    for t in result["targets"]:
        verdict = "PASS" if t["met"] else "FAIL"
        if t["kind"] == "speed" and not flags:
            verdict += " (not applicable: no int8 dot products detected)"
        print(f"{verdict}: {t['what']}: {t['value']} (target {t['target']})")
    return result


if __name__ == "__main__":
    main()
