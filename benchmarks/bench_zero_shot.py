"""ZeroShotClassifier: zero-shot and few-shot accuracy, image-embedding speed, real weights.

Three measurements (``--part``):

accuracy
    The tiny CLIP of the tests (``tests/data/tiny_clip``, trained on captioned synthetic
    shapes by ``tools/train_tiny_clip.py``, read at run time) on ``--n-test`` fresh rendered
    images of the 20 colour-shape classes, the 4 never seen in training included (reported
    apart: "unseen"), with the templates ``"a {}."`` and ``"a photo of a {}."``. Compared at
    k = 1, 2, 4, 8, 16 labelled images per class (``--seeds`` support sets, each drawn with
    its own render seeds; mean and std over them): zero-shot (no image), the classifier's
    text-anchored probe (``anchored_probe``: mean cross-entropy of ``logit_scale * E @ W.T``
    plus ``text_anchor * logit_scale / 2 * ||W - text||^2``) for each ``text_anchor`` of
    ``--anchors``,
    and scikit-learn's ``LogisticRegression`` (default C, ``max_iter=10000``) on the same
    embeddings. The embeddings are computed once per image set (``clf.transform``) and the
    probe is called directly; for the chosen value, ``ZeroShotClassifier(...).fit(shots,
    labels).score(test, labels)`` is checked to give the same accuracy. The recommended
    default ``text_anchor``: among the values whose mean accuracy (all classes) over k in
    {1, 2, 4} is within ``--margin`` of the best (ties within the seeds' noise), the one
    that falls least short of the best value at any k measured (robust as k grows); and
    whether it beats zero-shot and the logistic regression at k = 1, 2 and 4.
    The weights' file is fingerprinted before and after; if it changed meanwhile (the tiny
    CLIP being retrained), the part runs again on the new weights.

speed
    ``PretrainedFeatureExtractor("open_clip:ViT-B-32", weights=None)`` (random init: speed
    does not depend on the weights; 224 px) on ``--n-files`` JPEG files (rendered shapes,
    320x256) against the loop an open_clip user writes::

        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
        loader = DataLoader(Files(paths, preprocess), batch_size=32, num_workers=W)
        with torch.no_grad():
            for batch in loader:
                features = model.encode_image(batch, normalize=True)

    with the same weights, batch size, torch threads (``--threads``) and decoding workers
    (``--workers``: the DataLoader's processes, sktransfer's ``n_jobs`` threads). Both in
    float32 (``precision="float32"``), and sktransfer's default ``precision="auto"`` (its
    path on this machine is named: native bf16 where the CPU has it, else float32). Best of
    ``--repeats`` interleaved runs after a warm-up; target ratio >= 0.95. The embeddings are
    compared (max abs difference, cosine): sktransfer decodes JPEGs with torchvision and
    resizes tensors (antialiased bicubic), open_clip's ``preprocess`` resizes PIL images
    (PIL's bicubic), so they differ slightly; the same comparison on PIL images given to
    sktransfer (resized by PIL too) isolates the model.

real (``--real``, needs cached weights and CIFAR-10 on disk; cannot run offline without)
    ``ZeroShotClassifier("open_clip:ViT-B-32/laion2b_s34b_b79k", classes=<CIFAR-10 names>,
    templates=<CLIP's 18 CIFAR-10 templates>)`` on torchvision's CIFAR-10 test set (10,000
    images). Expected: 0.9358, open_clip's published zero-shot figure for this model
    (docs/openclip_results.csv of github.com/mlfoundations/open_clip, row
    ``ViT-B-32,laion2b_s34b_b79k``, column CIFAR-10; measured with LAION's CLIP_benchmark,
    whose templates for cifar10 (clip_benchmark/datasets/
    en_zeroshot_classification_templates.json) are the ones below, and class names
    torchvision's). Reproduce, on a connected machine once, then offline::

        python -c "import open_clip as o; o.create_model('ViT-B-32', 'laion2b_s34b_b79k')"
        python -c "import torchvision.datasets as d; d.CIFAR10('data', False, download=True)"
        .venv/bin/python benchmarks/bench_zero_shot.py --real --cifar-root data

    which computes, in Python::

        test = torchvision.datasets.CIFAR10("data", train=False)
        clf = ZeroShotClassifier("open_clip:ViT-B-32/laion2b_s34b_b79k", classes=test.classes,
                                 templates=CIFAR10_TEMPLATES, precision="float32").fit()
        clf.score([image for image, _ in test], np.array(test.classes)[test.targets])

    (PIL images, so that the resize is PIL's, as in open_clip's preprocess.) Writes
    ``benchmarks/results/zero_shot_real.json``; without the weights or the data it exits
    with a message saying which is missing.

Run: .venv/bin/python benchmarks/bench_zero_shot.py [--part accuracy|speed|all] [--real]
Writes benchmarks/results/zero_shot.json and zero_shot.md (accuracy and speed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import path_of, sides

ROOT = Path(__file__).resolve().parents[1]
TINY_CLIP = ROOT / "tests" / "data" / "tiny_clip"
TINY_TEMPLATES = ["a {}.", "a photo of a {}."]
ANCHORS = [0.005, 0.015, 0.05, 0.1, 0.15, 0.25, 0.5, 1.5]
SHOTS = [1, 2, 4, 8, 16]
CHOICE_SHOTS = (1, 2, 4)  # the default text_anchor is chosen on these
# render seeds far from the training run's (seed * 1_000_003 + step, step < ~10^4)
TEST_SEED = 777_777_777
SHOT_SEED = 888_000_000

REAL_MODEL = "open_clip:ViT-B-32/laion2b_s34b_b79k"
REAL_EXPECTED = 0.9358
REAL_SOURCE = ("open_clip docs/openclip_results.csv (github.com/mlfoundations/open_clip, "
               "commit f862f86c), row 'ViT-B-32,laion2b_s34b_b79k', column CIFAR-10; "
               "measured with LAION's CLIP_benchmark")
REAL_TOLERANCE = 0.005
# CLIP_benchmark's cifar10 templates ("{c}" written "{}"), from CLIP's own CIFAR-10 prompts
CIFAR10_TEMPLATES = [
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.",
    "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.",
    "a bad photo of the {}.", "a good photo of the {}.", "a photo of the small {}.",
    "a photo of the big {}.",
]


# ---------------------------------------------------------------------------- accuracy
def weights_fingerprint(folder: Path = TINY_CLIP) -> dict:
    """The tiny CLIP's weights file: modification time and SHA-256 (first 16 hex)."""
    path = folder / "open_clip_model.safetensors"
    return {"mtime": path.stat().st_mtime,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    path = Path(path).absolute()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _mean_std(values) -> list[float]:
    return [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]


def _support_sets(clf, combos, n_seeds: int, max_k: int):
    """Per seed: ``max_k`` rendered images per class (its own render seed per class and
    seed), their embeddings and labels; the k-shot set is the first k of each class."""
    from sktransfer._captioned_shapes import render

    sets = []
    for rep in range(n_seeds):
        images = np.concatenate([render(max_k, seed=SHOT_SEED + 1000 * rep + c,
                                        combos=[combo])[0]
                                 for c, combo in enumerate(combos)])
        sets.append((images, clf.transform(images)))
    return sets


def _take(n_classes: int, max_k: int, k: int) -> np.ndarray:
    """Indices of the first k images of each class in a support set."""
    return np.concatenate([c * max_k + np.arange(k) for c in range(n_classes)])


def accuracy_part(args) -> dict:
    """Zero-shot, the anchored probe per text_anchor, and LogisticRegression, per k."""
    from sklearn.linear_model import LogisticRegression

    from sktransfer import ZeroShotClassifier
    from sktransfer._captioned_shapes import all_combos, combo_name, held_out_combos, render
    from sktransfer._zero_shot import TEXT_ANCHOR, anchored_probe

    start = time.perf_counter()
    folder = Path(args.tiny_clip)
    fingerprint = weights_fingerprint(folder)
    spec = f"open_clip:local-dir:{folder}"
    combos = all_combos()
    classes = [combo_name(*c) for c in combos]
    unseen_names = [combo_name(*c) for c in held_out_combos()[1]]

    def classifier(**params):
        return ZeroShotClassifier(spec, classes=classes, templates=TINY_TEMPLATES,
                                  precision="float32", **params)

    clf = classifier().fit()
    text, scale = clf.class_embeddings_, clf.logit_scale_
    test_images, _, attributes = render(args.n_test, seed=TEST_SEED)
    test_names = attributes["combo"]
    truth = np.array([classes.index(name) for name in test_names])
    unseen = np.isin(test_names, unseen_names)
    test_emb = clf.transform(test_images)

    def score(pred):
        hit = pred == truth
        return float(hit.mean()), float(hit[unseen].mean())

    zero = score((test_emb @ text.T).argmax(1))
    max_k = max(args.shots)
    sets = _support_sets(clf, combos, args.seeds, max_k)
    # raw[method][k] = list over seeds of (all, unseen)
    raw: dict[str, dict[int, list[tuple[float, float]]]] = {}
    coefs: dict[tuple[float, int, int], np.ndarray] = {}
    for k in args.shots:
        take = _take(len(classes), max_k, k)
        labels = np.repeat(np.arange(len(classes)), k)
        for rep, (_, emb) in enumerate(sets):
            shots = emb[take]
            raw.setdefault("zero-shot", {}).setdefault(k, []).append(zero)
            for anchor in args.anchors:
                coef = anchored_probe(shots, labels, text, scale, anchor)
                coefs[anchor, k, rep] = coef
                raw.setdefault(f"anchor={anchor:g}", {}).setdefault(k, []).append(
                    score((test_emb @ coef.T).argmax(1)))
            lr = LogisticRegression(max_iter=10_000).fit(shots, labels)
            raw.setdefault("LogisticRegression", {}).setdefault(k, []).append(
                score(lr.predict(test_emb)))

    table = {method: {str(k): {"all": _mean_std([v[0] for v in runs]),
                               "unseen": _mean_std([v[1] for v in runs]),
                               "all_per_seed": [round(v[0], 4) for v in runs]}
                      for k, runs in per_k.items()}
             for method, per_k in raw.items()}

    # the default: judged on the mean accuracy (all classes) over k in CHOICE_SHOTS
    choice_shots = [k for k in CHOICE_SHOTS if k in args.shots]

    def mean_all(method, k):
        return table[method][str(k)]["all"][0]

    anchors = {a: f"anchor={a:g}" for a in args.anchors}
    average = {a: float(np.mean([mean_all(m, k) for k in choice_shots]))
               for a, m in anchors.items()}
    best_at = {k: max(mean_all(m, k) for m in anchors.values()) for k in choice_shots}
    shortfall = {a: {str(k): round(best_at[k] - mean_all(m, k), 4) for k in choice_shots}
                 for a, m in anchors.items()}
    # near-best on k = 1, 2, 4 (within --margin, the seeds' noise), then the one that falls
    # least short of the best at any k measured (robust as the number of shots grows)
    top = max(average.values())
    near = [a for a in args.anchors if average[a] >= top - args.margin]
    worst = {a: max(max(mean_all(m, k) for m in anchors.values()) - mean_all(anchors[a], k)
                    for k in args.shots) for a in near}
    chosen = min(near, key=lambda a: (round(worst[a], 4), -average[a]))
    method = anchors[chosen]
    beats = {}
    for k in choice_shots:
        ours = np.array(table[method][str(k)]["all_per_seed"])
        beats[str(k)] = {
            "zero_shot": mean_all(method, k) > mean_all("zero-shot", k),
            "logistic_regression": mean_all(method, k) > mean_all("LogisticRegression", k),
            "seeds_beating_zero_shot": int((ours > zero[0]).sum()),
            "seeds_beating_lr": int((ours > np.array(
                table["LogisticRegression"][str(k)]["all_per_seed"])).sum())}

    # the estimator itself, with the chosen value: the same accuracy as the direct probe
    check = []
    for k in choice_shots:
        images = sets[0][0]
        take = _take(len(classes), max_k, k)
        labels = np.asarray(classes)[np.repeat(np.arange(len(classes)), k)]
        fitted = classifier(text_anchor=chosen).fit(images[take], labels)
        estimator = fitted.score(test_images, test_names)
        direct = raw[method][k][0][0]
        check.append({"k": k, "seed": 0, "estimator_score": round(estimator, 4),
                      "direct_probe": round(direct, 4),
                      "max_abs_coef_diff": float(np.abs(fitted.coef_ -
                                                        coefs[chosen, k, 0]).max())})
    after = weights_fingerprint(folder)
    return {
        "model": _shown(folder), "weights": fingerprint,
        "weights_changed_during_run": after != fingerprint,
        "logit_scale": round(scale, 3), "embed_dim": int(text.shape[1]),
        "templates": TINY_TEMPLATES, "n_test": args.n_test, "n_unseen": int(unseen.sum()),
        "unseen_classes": unseen_names, "test_seed": TEST_SEED, "shot_seed": SHOT_SEED,
        "seeds": args.seeds, "shots": args.shots, "anchors": args.anchors,
        "lr": "LogisticRegression(C=1.0, max_iter=10000)", "table": table,
        "choice": {"rule": f"within {args.margin} of the best mean accuracy (all) over k in "
                           f"{choice_shots}, the smallest worst shortfall from the best "
                           f"at any k in {args.shots}",
                   "near_best": near,
                   "worst_shortfall_any_k": {f"{a:g}": round(v, 4) for a, v in worst.items()},
                   "current_default": TEXT_ANCHOR, "recommended": chosen,
                   "average_over_k": {f"{a:g}": round(v, 4) for a, v in average.items()},
                   "shortfall_from_best_at_k": {f"{a:g}": v for a, v in shortfall.items()},
                   "beats": beats,
                   "beats_both_at_all_k": all(b["zero_shot"] and b["logistic_regression"]
                                              for b in beats.values())},
        "estimator_check": check, "seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------- speed
def _write_jpegs(folder: Path, n: int) -> list[str]:
    """``n`` JPEG files of rendered shapes, 320x256."""
    from sktransfer._captioned_shapes import render

    images, _, _ = render(n, seed=4242, size=256)
    paths = []
    for i, array in enumerate(images):
        paths.append(str(folder / f"{i:04d}.jpg"))
        Image.fromarray(array).resize((320, 256), Image.Resampling.BILINEAR).save(
            paths[-1], quality=90)
    return paths


def open_clip_loop(model, preprocess, paths, batch_size: int, workers: int) -> np.ndarray:
    """What an open_clip user writes: preprocess in a DataLoader, encode_image, no_grad."""
    from torch.utils.data import DataLoader, Dataset

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return preprocess(Image.open(paths[i]).convert("RGB"))

    out = []
    with torch.no_grad():
        for batch in DataLoader(Files(), batch_size=batch_size, num_workers=workers):
            out.append(model.encode_image(batch, normalize=True).numpy())
    return np.concatenate(out)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"max_abs_diff": float(np.abs(a - b).max()),
            "min_cosine": round(float(cosine.min()), 6)}


def bf16_grad_modes(model, batch_size: int, repeats: int = 2) -> dict:
    """Seconds per batch of open_clip's image tower under CPU bf16 autocast, in no_grad and
    in inference_mode (sktransfer's), float32 for reference: whether "auto" gains here."""
    x = torch.randn(batch_size, 3, 224, 224)
    out = {}
    for name, mode, bf16 in (("float32, no_grad", torch.no_grad, False),
                             ("bf16 autocast, no_grad", torch.no_grad, True),
                             ("bf16 autocast, inference_mode", torch.inference_mode, True)):
        times = []
        for _ in range(repeats):
            with mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                times.append(_timed(lambda: model.visual(x))[0])
        out[name] = round(min(times), 3)
    return out


def speed_part(args) -> dict:
    """sktransfer (float32 and auto) vs open_clip's own loop, images/s on JPEG files."""
    import open_clip

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer._runtime import autocast_dtype, cpu_detects_native_bf16

    start = time.perf_counter()

    def extractor(precision):
        return PretrainedFeatureExtractor(
            "open_clip:ViT-B-32", weights=None, batch_size=args.batch_size,
            precision=precision, n_jobs=args.workers, random_state=0).fit()

    ext32, ext_auto = extractor("float32"), extractor("auto")
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    # the same weights on both sides (sktransfer's body wraps open_clip's `visual`)
    state = ext32.backbone_.body.state_dict()
    model.visual.load_state_dict({k.split("visual.", 1)[1]: v for k, v in state.items()})
    n = args.n_files
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_jpegs(Path(tmp), n)
        warm = paths[: args.batch_size]
        ext32.transform(warm), ext_auto.transform(warm)
        open_clip_loop(model, preprocess, warm, args.batch_size, args.workers)
        runs = {"open_clip": lambda: open_clip_loop(model, preprocess, paths,
                                                    args.batch_size, args.workers),
                "float32": lambda: ext32.transform(paths),
                "auto": lambda: ext_auto.transform(paths)}
        times = {name: [] for name in runs}
        outputs = {}
        for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
            for name, fn in runs.items():
                seconds, outputs[name] = _timed(fn)
                times[name].append(seconds)
        pil = [Image.open(p).convert("RGB") for p in paths]
        same_pixels = _agreement(ext32.transform(pil), outputs["open_clip"])
    native_bf16_cpu = ext_auto.transform_cost_.device == "cpu" and autocast_dtype(
        torch.device("cpu"), "auto") == torch.bfloat16
    grad_modes = bf16_grad_modes(model, args.batch_size) if native_bf16_cpu else None
    best = {name: min(t) for name, t in times.items()}
    median = {name: float(np.median(t)) for name, t in times.items()}
    img_s = {name: n / t for name, t in best.items()}
    device = ext32.transform_cost_.device
    gpu = device != "cpu"
    return {
        "model": "open_clip:ViT-B-32 (random init), 224 px", "n_files": n,
        "file_size": "320x256 JPEG", "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(), "decode_workers": args.workers,
        "device": device, "img_s": {k: round(v, 2) for k, v in img_s.items()},
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ratio_float32": round(img_s["float32"] / img_s["open_clip"], 3),
        "ratio_auto": round(img_s["auto"] / img_s["open_clip"], 3),
        "ratio_float32_median": round(median["open_clip"] / median["float32"], 3),
        "ratio_auto_median": round(median["open_clip"] / median["auto"], 3),
        "bf16_seconds_per_batch_by_grad_mode": grad_modes,
        "auto_precision": str(autocast_dtype(torch.device(device), "auto")
                              or torch.float32).removeprefix("torch."),
        "cpu_native_bf16": cpu_detects_native_bf16(),
        "path_float32": sides(sktransfer=path_of(ext32.transform_cost_, show_device=gpu),
                              open_clip_loop=path_of("cpu", show_device=gpu)),
        "path_auto": sides(sktransfer=path_of(ext_auto.transform_cost_, show_device=gpu),
                           open_clip_loop=path_of("cpu", show_device=gpu)),
        "agreement_jpeg_paths": _agreement(outputs["float32"], outputs["open_clip"]),
        "agreement_same_pil_resize": same_pixels,
        "agreement_auto_vs_float32": _agreement(outputs["auto"], outputs["float32"]),
        "target": 0.95, "wall_seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------- real
def real_part(args) -> dict:
    """The published CIFAR-10 zero-shot figure of ViT-B-32/laion2b_s34b_b79k, offline."""
    from sktransfer import WeightsUnavailableError, ZeroShotClassifier

    missing = []
    try:
        import torchvision

        test = torchvision.datasets.CIFAR10(args.cifar_root, train=False, download=False)
    except (RuntimeError, OSError) as exc:
        test = None
        missing.append(f"CIFAR-10 test set not found under {args.cifar_root!r} ({exc}); "
                       "on a connected machine: python -c \"import torchvision; "
                       f"torchvision.datasets.CIFAR10('{args.cifar_root}', train=False, "
                       "download=True)\"")
    clf = ZeroShotClassifier(REAL_MODEL, classes=test.classes if test else ["a", "b"],
                             templates=CIFAR10_TEMPLATES, precision=args.real_precision,
                             batch_size=args.batch_size)
    try:
        clf.fit()
    except WeightsUnavailableError as exc:
        missing.append(f"{REAL_MODEL} weights not in the cache ({exc}); on a connected "
                       "machine: python -c \"import open_clip; open_clip.create_model("
                       "'ViT-B-32', pretrained='laion2b_s34b_b79k')\"")
    if missing:
        raise SystemExit("bench_zero_shot --real cannot run here:\n- " + "\n- ".join(missing)
                         + f"\nExpected figure: {REAL_EXPECTED} ({REAL_SOURCE}).")
    start = time.perf_counter()
    images = [image for image, _ in test]  # PIL: resized by PIL, as open_clip's preprocess
    labels = np.asarray(test.classes)[np.asarray(test.targets)]
    accuracy = clf.score(images, labels)
    return {"model": REAL_MODEL, "dataset": f"CIFAR-10 test (torchvision), {len(images)} images",
            "templates": "CLIP_benchmark cifar10 (18)", "precision": args.real_precision,
            "path": path_of(clf.transform_cost_), "accuracy": round(float(accuracy), 4),
            "expected": REAL_EXPECTED, "source": REAL_SOURCE, "tolerance": REAL_TOLERANCE,
            "met": abs(accuracy - REAL_EXPECTED) <= REAL_TOLERANCE,
            "seconds": round(time.perf_counter() - start, 1)}


# ---------------------------------------------------------------------------- report
def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _cell(entry: dict, key: str) -> str:
    mean, std = entry[key]
    return f"{mean:.3f} ± {std:.3f}"


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']}", ""]
    acc = result.get("accuracy")
    if acc:
        shots = acc["shots"]
        lines.append(f"Tiny CLIP {acc['model']} (weights sha256 {acc['weights']['sha256']}, "
                     f"logit_scale {acc['logit_scale']}), {acc['n_test']} test images "
                     f"({acc['n_unseen']} of the never-seen combos "
                     f"{', '.join(acc['unseen_classes'])}), "
                     f"{acc['seeds']} support sets; accuracy mean ± std.")
        for key in ("all", "unseen"):
            lines += ["", f"Accuracy, {key} classes" if key == "all" else
                      "Accuracy, never-seen combos only", "",
                      "| method | " + " | ".join(f"k={k}" for k in shots) + " |",
                      "|---|" + "---|" * len(shots)]
            for method, per_k in acc["table"].items():
                lines.append(f"| {method} | " + " | ".join(_cell(per_k[str(k)], key)
                                                         for k in shots) + " |")
        choice = acc["choice"]
        lines += ["", f"Default text_anchor ({choice['rule']}): recommended "
                  f"{choice['recommended']:g} (current {choice['current_default']:g}).",
                  "Mean accuracy (all) over k=1,2,4: " + ", ".join(
                      f"{a}: {v:.3f}" for a, v in choice["average_over_k"].items()),
                  "Near-best values' worst shortfall at any k: " + ", ".join(
                      f"{a}: {v:.3f}" for a, v in choice["worst_shortfall_any_k"].items()),
                  "Shortfall of the recommended value from the best at k=1,2,4: " +
                  ", ".join(f"k={k}: {v:.3f}" for k, v in choice["shortfall_from_best_at_k"][
                      f"{choice['recommended']:g}"].items()),
                  "Beats zero-shot and LogisticRegression at "
                  + ", ".join(f"k={k}: {_yes(b['zero_shot'] and b['logistic_regression'])}"
                              f" ({b['seeds_beating_zero_shot']}/{acc['seeds']} and "
                              f"{b['seeds_beating_lr']}/{acc['seeds']} seeds)"
                              for k, b in choice["beats"].items()),
                  "ZeroShotClassifier.fit(...).score(...) vs the direct probe: " +
                  ", ".join(f"k={c['k']}: {c['estimator_score']:.4f} vs "
                            f"{c['direct_probe']:.4f}" for c in acc["estimator_check"])]
    speed = result.get("speed")
    if speed:
        lines += ["", f"Image embedding, {speed['model']}, {speed['n_files']} "
                  f"{speed['file_size']} files, batch {speed['batch_size']}, "
                  f"{speed['torch_threads']} torch thread(s), {speed['decode_workers']} "
                  "decoding workers, best of "
                  f"{len(speed['seconds']['open_clip'])}", "",
                  "| run | img/s | ratio vs open_clip loop | path | target | met |",
                  "|---|---|---|---|---|---|",
                  f"| open_clip loop (float32) | {speed['img_s']['open_clip']:.1f} | 1 | "
                  "float32 | | |"]
        for name, ratio, path in (("float32", speed["ratio_float32"], speed["path_float32"]),
                                  ("auto", speed["ratio_auto"], speed["path_auto"])):
            lines.append(f"| sktransfer precision={name} | {speed['img_s'][name]:.1f} | "
                         f"{ratio:.3f} | {path} | >= 0.95 | "
                         f"{'yes' if ratio >= 0.95 else 'NO'} |")
        lines += ["", f"Ratios from the median runs instead: float32 "
                  f"{speed['ratio_float32_median']:.3f}, auto {speed['ratio_auto_median']:.3f}."]
        modes = speed.get("bf16_seconds_per_batch_by_grad_mode")
        if modes:
            lines += ["", "open_clip image tower, one batch, s: " + ", ".join(
                f"{name} {t:.2f}" for name, t in modes.items())]
        jpeg, pil = speed["agreement_jpeg_paths"], speed["agreement_same_pil_resize"]
        lines += ["", f"Embeddings vs the open_clip loop: JPEG paths (torchvision decode, "
                  f"tensor resize) max abs diff {jpeg['max_abs_diff']:.2e}, min cosine "
                  f"{jpeg['min_cosine']:.6f}; PIL images (PIL resize, as open_clip) max abs "
                  f"diff {pil['max_abs_diff']:.2e}, min cosine {pil['min_cosine']:.6f}."]
    lines += ["", f"Real weights (--real, not run here): expected CIFAR-10 zero-shot "
              f"{REAL_EXPECTED} for {REAL_MODEL} ({REAL_SOURCE})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["accuracy", "speed", "all"], default="all")
    parser.add_argument("--real", action="store_true",
                        help="only the real-weights CIFAR-10 check (cached weights and data)")
    parser.add_argument("--cifar-root", default="data",
                        help="the folder holding cifar-10-batches-py")
    parser.add_argument("--real-precision", default="float32")
    parser.add_argument("--tiny-clip", default=str(TINY_CLIP),
                        help="the open_clip local-dir folder of the accuracy part")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, nargs="+", default=SHOTS)
    parser.add_argument("--anchors", type=float, nargs="+", default=ANCHORS)
    parser.add_argument("--margin", type=float, default=0.003,
                        help="text_anchor values this close to the best mean over k=1,2,4 "
                             "count as tied; the most robust across k wins")
    parser.add_argument("--n-files", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="benchmarks/results/zero_shot.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
               + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
               + f", torch {torch.__version__}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() and args.part != "all" else {}
    if args.real:
        result = {"machine": machine, "real": real_part(args)}
        real_out = out.with_name(out.stem + "_real.json")
        real_out.write_text(json.dumps(result, indent=1) + "\n")
        r = result["real"]
        print(f"{r['model']} on {r['dataset']}: {r['accuracy']:.4f} (expected "
              f"{r['expected']}, {'met' if r['met'] else 'NOT met'}) [{r['path']}]")
        return result

    # one part alone keeps the other's latest figures
    result: dict = {**previous, "machine": machine}
    if args.part in ("accuracy", "all"):
        for _ in range(3):  # once more if the tiny CLIP's weights were replaced meanwhile
            result["accuracy"] = accuracy_part(args)
            if not result["accuracy"]["weights_changed_during_run"]:
                break
            print("tiny CLIP weights changed during the run: measuring again", flush=True)
    if args.part in ("speed", "all"):
        result["speed"] = speed_part(args)
    result["real_expected"] = {"model": REAL_MODEL, "cifar10_zero_shot": REAL_EXPECTED,
                               "source": REAL_SOURCE,
                               "command": "benchmarks/bench_zero_shot.py --real "
                                          "--cifar-root <folder with cifar-10-batches-py>"}
    out.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
