"""Scaling with N: transform time grows linearly, peak memory stays flat.

Each N runs in a fresh process that embeds N distinct small JPEG files (so the input
takes no memory) and reports its wall time and its peak resident memory during the
transform (sampled every 5 ms from /proc/self/statm) beyond what it held before; the
output array (N x features float32) is the only part that may grow with N. On a CUDA
machine it also reports the GPU memory still allocated and reserved after the transform.
Each row also names the arithmetic path the transform ran in (``path``: native or emulated
bf16, float32, GPU autocast), as the extractor recorded it.

Run: .venv/bin/python benchmarks/bench_scaling.py [--sizes 500 2000 5000 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, os, sys, threading, time
import numpy as np
import torch
from sktransfer import PretrainedFeatureExtractor
sys.path.insert(0, sys.argv[2])
from _paths import path_of
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
paths = [l for l in open(sys.argv[1]).read().split("\\n") if l]
ext = PretrainedFeatureExtractor("mobilenet_v3_small", weights=None, image_size=64,
                                 batch_size=64).fit()
ext.transform(paths[:256])  # warm-up: allocator, threads, decoder
cuda = torch.cuda.is_available()
gpu_before = torch.cuda.memory_allocated() if cuda else 0
before = rss()
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
out = ext.transform(paths)
seconds = time.perf_counter() - start
done.set()
sampler.join()
gpu = {}
if cuda:
    gpu = {"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
           "gpu_allocated_after_mb": (torch.cuda.memory_allocated() - gpu_before) / 2**20,
           "gpu_reserved_after_mb": torch.cuda.memory_reserved() / 2**20}
print(json.dumps({"n": len(paths), "seconds": seconds,
                  "path": path_of(ext.transform_cost_),
                  "peak_growth_mb": (peak[0] - before) / 2**20,
                  "output_mb": out.nbytes / 2**20, **gpu}))
"""


def path_text(rows: list[dict]) -> str:
    """The rows' path, or each N's when they differ."""
    paths = {r["path"] for r in rows}
    if len(paths) == 1:
        return paths.pop()
    return ", ".join(f"N={r['n']}: {r['path']}" for r in rows)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000, 20000])
    parser.add_argument("--out", default="benchmarks/results/scaling.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        distinct = []
        base_image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        for i in range(max(args.sizes)):  # distinct 96x96 JPEGs, one per image
            path = Path(tmp) / f"{i}.jpg"
            arr = base_image.copy()
            arr[:4, :4] = ((i >> 16) & 255, (i >> 8) & 255, i & 255)  # makes each unique
            Image.fromarray(arr).save(path)
            distinct.append(str(path))
        for n in args.sizes:
            listing = Path(tmp) / f"list{n}.txt"
            listing.write_text("\n".join(distinct[:n]))
            result = subprocess.run([sys.executable, "-c", CHILD, str(listing),
                                     str(Path(__file__).resolve().parent)],
                                    capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"{'N':>6} {'seconds':>8} {'s per 1000':>10} {'peak growth MB':>15} {'output MB':>10}"
          "  path")
    for r in rows:
        print(f"{r['n']:>6} {r['seconds']:>8.1f} {1000 * r['seconds'] / r['n']:>10.2f} "
              f"{r['peak_growth_mb']:>15.1f} {r['output_mb']:>10.1f}  {r['path']}")
    last = rows[-1]
    print(f"time ratio {last['seconds'] / base['seconds']:.2f} for N ratio "
          f"{last['n'] / base['n']:.0f}  [sktransfer: {path_text(rows)}]")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
