"""Dask scale-out: embedding JPEG files in one process vs a 2-worker LocalCluster.

Both runs embed the same N JPEG files (crops of scikit-learn's two sample photos,
320x240, quality 90) with the same network. On one machine the cluster adds no cores, so
the ratio (cluster images/s over single-process images/s, target >= 0.8) measures what
Dask costs: shipping the network, one task per partition, moving embeddings back. Also
measured: the fixed cost of starting the cluster, the scheduler's overhead per task
(round trips of empty tasks, target < 5% of a partition's task time), and what one core
decodes and crops per second, from which the projection for 10 million images on 8 and
64 GPU workers is written (see docs/scaling.md).

Run: .venv/bin/python benchmarks/bench_dask.py [--n 2000] [--model resnet18]
The two alternate (best of --repeats each), so drifting machine load hits both alike.
The ratio's line names the arithmetic path each ran in (``path``: float32 here, as the
extractor is asked for; native or emulated bf16 or GPU autocast otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _paths import path_of, sides
from PIL import Image
from sklearn.datasets import load_sample_images

from sktransfer import PretrainedFeatureExtractor
from sktransfer._runtime import resolve_device
from sktransfer.images import Preprocessing, decode_file


def make_jpegs(folder: Path, n: int) -> list[str]:
    """``n`` 320x240 crops of the two sample photos, flipped at random, as JPEG files."""
    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        photo = photos[i % 2]
        top = rng.integers(0, photo.shape[0] - 240)
        left = rng.integers(0, photo.shape[1] - 320)
        crop = photo[top:top + 240, left:left + 320]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        paths.append(str(folder / f"{i:05d}.jpg"))
        Image.fromarray(np.ascontiguousarray(crop)).save(paths[-1], quality=90)
    return paths


def decode_rate(paths: list[str], prep: Preprocessing) -> float:
    """Images per second one thread decodes, resizes and crops."""
    start = time.perf_counter()
    for i, path in enumerate(paths):
        prep.prepare(decode_file(path, i))
    return len(paths) / (time.perf_counter() - start)


def task_overhead_s(client, n: int = 500) -> float:
    """Wall seconds per empty task through the scheduler (submit, run, gather)."""
    client.gather(client.map(int, range(20), pure=False))  # warm
    start = time.perf_counter()
    client.gather(client.map(int, range(n), pure=False))
    return (time.perf_counter() - start) / n


def projection(n_images: int, workers: int, per_worker: float, partition: int,
               overhead_s: float, startup_s: float) -> float:
    """Wall seconds for ``n_images`` on ``workers`` workers of ``per_worker`` images/s.

    The scheduler handles tasks one at a time, so its per-task overhead adds up over
    all partitions (a worst case: in practice it overlaps with the workers' compute).
    """
    tasks = -(-n_images // partition)
    return startup_s + n_images / (workers * per_worker) + tasks * overhead_s


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--partition-size", type=int, default=125)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu-worker-cores", type=int, default=8,
                        help="decoding cores per GPU worker in the projection")
    parser.add_argument("--out", default="benchmarks/results/dask.json")
    args = parser.parse_args(argv)

    import dask.bag as db
    from distributed import Client, LocalCluster

    # Random init: speed does not depend on the weights' values, and this runs offline.
    ext = PretrainedFeatureExtractor(args.model, weights=None, precision="float32").fit()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.n)
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        per_core_decode = decode_rate(paths[:200], ext.backbone_.preprocessing)

        ext.transform(paths[:32])  # warm-up

        single_path = []  # the path the extractor records (a Dask transform records none)

        def run_single():
            start = time.perf_counter()
            out = ext.transform(paths)
            elapsed = time.perf_counter() - start
            single_path[:] = [path_of(ext.transform_cost_)]
            return elapsed, out

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("sktransfer._extractor"))  # workers import torch
        t_start = time.perf_counter() - start
        try:
            overhead = task_overhead_s(client)
            bag = db.from_sequence(paths, partition_size=args.partition_size)
            ext.transform(db.from_sequence(paths[:8], npartitions=args.workers)).compute()
            from distributed import get_task_stream

            t_single, t_cluster = np.inf, np.inf
            for _ in range(args.repeats):  # alternate, so drifting load hits both alike
                elapsed, single = run_single()
                t_single = min(t_single, elapsed)
                start = time.perf_counter()
                with get_task_stream(client) as stream:
                    distributed = ext.transform(bag).compute()
                elapsed = time.perf_counter() - start
                if elapsed < t_cluster:
                    t_cluster, best = elapsed, stream.data
            tasks = [t for t in best if "run_partition" in str(t["key"])]
            task_s = [sum(s["stop"] - s["start"] for s in t["startstops"]
                          if s["action"] == "compute") for t in tasks]
        finally:
            client.close()
            cluster.close()
    assert np.abs(distributed - single).max() < 1e-4, "the cluster must compute the same"
    # the workers resolve the same device and precision on this machine
    path = sides(single_process=single_path[0],
                 cluster=path_of(resolve_device(ext.device), ext.precision))

    single_rate = args.n / t_single
    cluster_rate = args.n / t_cluster
    per_worker = cluster_rate / args.workers
    gpu_worker = per_core_decode * args.gpu_worker_cores  # decode-bound GPU worker
    result = {
        "model": args.model, "n": args.n, "workers": args.workers,
        "threads": torch.get_num_threads(), "mean_jpeg_kb": mean_kb,
        "partition_size": args.partition_size,
        "single_img_s": single_rate, "cluster_img_s": cluster_rate,
        "cluster_img_s_per_worker": per_worker, "embedding_width": ext.n_features_out_,
        "ratio": cluster_rate / single_rate, "path": path, "cluster_start_s": t_start,
        "task_overhead_ms": overhead * 1e3, "mean_task_s": float(np.mean(task_s)),
        "overhead_share": overhead / float(np.mean(task_s)),
        "per_core_decode_img_s": per_core_decode,
        "projection": {
            "n_images": 10_000_000, "partition_size": 1024,
            "gpu_worker_cores": args.gpu_worker_cores,
            "gpu_worker_img_s": gpu_worker,
            "hours": {str(w): projection(10_000_000, w, gpu_worker, 1024, overhead,
                                         t_start) / 3600 for w in (8, 64)},
            "read_mb_s": {str(w): w * gpu_worker * mean_kb / 1024 for w in (8, 64)},
            "tasks_per_s": {str(w): w * gpu_worker / 1024 for w in (8, 64)},
            "client_ingest_mb_s": {str(w): w * gpu_worker * ext.n_features_out_ * 4 / 1e6
                                   for w in (8, 64)},
        },
    }
    print(f"{args.n} JPEGs ({mean_kb:.0f} KB), {args.model}, {args.workers} workers x 1 "
          f"thread, partitions of {args.partition_size}")
    print(f"single process: {single_rate:.1f} img/s; cluster: {cluster_rate:.1f} img/s; "
          f"ratio {result['ratio']:.2f} (target >= 0.8)  [{path}]")
    print(f"cluster start {t_start:.1f} s; scheduler overhead {overhead * 1e3:.2f} ms per "
          f"task vs {np.mean(task_s):.2f} s per partition task "
          f"({100 * result['overhead_share']:.2f}%, target < 5%)")
    print(f"one core decodes+crops {per_core_decode:.0f} img/s; a GPU worker with "
          f"{args.gpu_worker_cores} cores is decode-bound at {gpu_worker:.0f} img/s")
    for w, hours in result["projection"]["hours"].items():
        print(f"projection, 10M images on {w} GPU workers: {hours:.2f} h, reading "
              f"{result['projection']['read_mb_s'][w]:.0f} MB/s, "
              f"{result['projection']['tasks_per_s'][w]:.1f} tasks/s, embeddings into the "
              f"client {result['projection']['client_ingest_mb_s'][w]:.0f} MB/s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
