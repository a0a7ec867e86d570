"""GridSearchCV wall time over the head's parameters, with and without the embedding cache.

A Pipeline(PretrainedFeatureExtractor, LogisticRegression) searched over N values of C with
K folds embeds every image N*K times (plus the refit) without the cache, once with it.
Target: speedup >= 2/3 of N*K (8x for 4 x 3). Also times a fully cached fit + transform
(one fold of such a search: no FLOP count, no forward pass). Prints (and records as
``path``) the arithmetic path the extractor ran in (native or emulated bf16, float32, GPU
autocast).

Run: .venv/bin/python benchmarks/bench_cache.py [--n-images 128] [--size 224] [--candidates 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _paths import path_of
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor, load_backbone


def search_time(X, y, cache, weights, args) -> tuple[float, str]:
    """Wall seconds of the search, and the path its refitted extractor's embedding ran in."""
    pipe = make_pipeline(
        PretrainedFeatureExtractor(args.model, weights=weights, image_size=args.size,
                                   cache=cache),
        LogisticRegression(max_iter=500),
    )
    grid = {"logisticregression__C": list(np.logspace(-2, 1, args.candidates))}
    start = time.perf_counter()
    search = GridSearchCV(pipe, grid, cv=args.folds).fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, path_of(search.best_estimator_[0].transform_cost_)


def fully_cached_fit(X, cache, weights, args) -> dict:
    """What one fold of a search costs once every embedding is cached: a fresh extractor's
    fit + transform (best of 5), with the FLOP counts it made; then the same with the
    process's FLOP memo emptied (a fresh process)."""
    from sktransfer import _cost

    counted = []
    real = _cost._count_any
    _cost._count_any = lambda *a: counted.append(a[1]) or real(*a)
    try:
        def once() -> tuple[float, int]:
            ext = PretrainedFeatureExtractor(args.model, weights=weights, image_size=args.size,
                                             cache=cache)
            start = time.perf_counter()
            ext.fit(X).transform(X)
            return time.perf_counter() - start, ext.transform_cost_.n_images

        runs = [once() for _ in range(5)]
        warm = min(seconds for seconds, _ in runs)
        _cost._MEMO.clear()
        fresh = min(once()[0] for _ in range(3))
    finally:
        _cost._count_any = real
    return {"cached_fit_s": warm, "cached_fit_fresh_s": fresh,
            "cached_flop_counts": len(counted),
            "cached_images_embedded": max(n for _, n in runs)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n-images", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/cache.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(args.n_images, args.size, args.size, 3), dtype=np.uint8)
    y = np.arange(args.n_images) % 4
    with tempfile.TemporaryDirectory() as tmp:
        # Fixed weights from a local file (random init would differ at every fit, and the
        # cache would rightly miss); offline, like ImageNet weights in the hub cache.
        weights = Path(tmp) / "weights.pth"
        torch.manual_seed(0)
        torch.save(load_backbone(args.model, weights=None).body.net.state_dict(), weights)
        without, path = search_time(X, y, None, weights, args)
        cold, path_cached = search_time(X, y, Path(tmp) / "cache", weights, args)  # starts empty
        cached_fit = fully_cached_fit(X, Path(tmp) / "cache", weights, args)
    if path_cached != path:
        path = f"{path} without cache, {path_cached} with it"
    # every image embedded once instead of N*K (+1 refit) times: ideal N*K; target 2/3 of it
    target = args.candidates * args.folds * 2 / 3
    record = {"model": args.model, "n_images": args.n_images, "size": args.size,
              "candidates": args.candidates, "folds": args.folds, "torch": torch.__version__,
              "without_cache_s": without, "with_cache_s": cold, "speedup": without / cold,
              "target_speedup": target, "path": path, **cached_fit}
    print(f"GridSearchCV {args.candidates} candidates x {args.folds} folds, {args.n_images} "
          f"images, {args.model}: without cache {without:.1f} s, with cache {cold:.1f} s, "
          f"speedup {without / cold:.1f}x (target >= {target:.1f}x)  [sktransfer: {path}]")
    print(f"fully cached fit + transform of {args.n_images} images: "
          f"{cached_fit['cached_fit_s']:.3f} s ({cached_fit['cached_flop_counts']} FLOP "
          f"counts, {cached_fit['cached_images_embedded']} images embedded); the same in a "
          f"process that never counted this network: {cached_fit['cached_fit_fresh_s']:.3f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
