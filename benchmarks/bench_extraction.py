"""Extraction throughput: PretrainedFeatureExtractor vs a hand-written torch loop.

Both do the same work on the same model, inputs and batch size: resize the shorter side,
centre crop, scale, normalise, forward in eval mode under inference_mode, copy the pooled
features to a float32 NumPy array. The hand-written loop uses its best settings for the
device (channels_last, measured faster on CUDA and on the CPU; bf16 autocast on CUDA).

The ``auto`` column compares the extractor's default, ``precision="auto"`` (bf16 autocast
on CPUs with native bf16 and on GPUs), with the hand-written loop in float32 (target on
a native-bf16 CPU: >= 1.4). Where "auto" means float32 (CPUs without native bf16) the two
ratios measure the same thing.

Run: .venv/bin/python benchmarks/bench_extraction.py [--model efficientnet_b0] [--n 256]
Runs alternate between the two (best of --repeats each), so drifting machine load hits
both alike. Prints images/s for both and the ratio (target >= 0.95), with the arithmetic
path each ran in (``path``: native or emulated bf16, float32, GPU autocast), and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _paths import path_of, sides
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from sktransfer import PretrainedFeatureExtractor, load_backbone
from sktransfer._runtime import autocast_dtype, resolve_device, use_channels_last


def hand_written(body, X, prep, batch_size, device, precision="auto"):
    """The loop a PyTorch user would write for a uint8 NHWC array."""
    dtype = autocast_dtype(device, precision)
    cl = use_channels_last(device)  # its best setting on this device, measured
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255
    body = body.to(device, memory_format=torch.channels_last if cl else torch.contiguous_format)
    out = np.empty((len(X), body(torch.zeros(1, 3, 224, 224, device=device)).shape[1]),
                   np.float32)
    with torch.inference_mode():
        for s in range(0, len(X), batch_size):
            x = torch.from_numpy(X[s : s + batch_size]).permute(0, 3, 1, 2)
            x = TF.resize(x, [prep.resize_size], interpolation=prep.interpolation, antialias=True)
            x = TF.center_crop(x, [prep.crop_size] * 2).to(device, non_blocking=True)
            x = (x.float() - mean) / std
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                f = body(x)
            out[s : s + len(x)] = f.float().cpu().numpy()
    return out


def hand_written_paths(body, paths, prep, batch_size, device, precision="auto"):
    """The same for JPEG files, decoded with PIL in a torch DataLoader with workers."""
    from torch.utils.data import DataLoader, Dataset

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as img:
                img = img.convert("RGB")
            img = TF.center_crop(TF.resize(img, [prep.resize_size],
                                           interpolation=prep.interpolation), [prep.crop_size] * 2)
            return TF.pil_to_tensor(img)

    dtype = autocast_dtype(device, precision)
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1) * 255
    loader = DataLoader(Files(), batch_size=batch_size, num_workers=4,
                        pin_memory=device.type == "cuda")
    cl = use_channels_last(device)
    body = body.to(device, memory_format=torch.channels_last if cl else torch.contiguous_format)
    out, s = None, 0
    with torch.inference_mode():
        for x in loader:
            x = (x.to(device, non_blocking=True).float() - mean) / std
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                f = body(x).float().cpu().numpy()
            out = np.empty((len(paths), f.shape[1]), np.float32) if out is None else out
            out[s : s + len(f)] = f
            s += len(f)
    return out


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def best_of_interleaved(fn_a, fn_b, repeats):
    """Best time of each, runs alternating (a, b, a, b...) so load drift hits both alike."""
    times_a, times_b = [], []
    for _ in range(repeats):
        t, result_a = _timed(fn_a)
        times_a.append(t)
        t, result_b = _timed(fn_b)
        times_b.append(t)
    return min(times_a), result_a, min(times_b), result_b


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/extraction.json")
    args = parser.parse_args(argv)

    device = resolve_device("auto")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(args.n, 256, 256, 3), dtype=np.uint8)
    # Random init: speed does not depend on the weights' values, and this runs offline.
    ext = PretrainedFeatureExtractor(args.model, weights=None, batch_size=args.batch_size).fit()
    body = load_backbone(args.model, weights=None).body.eval().requires_grad_(False)
    body.load_state_dict(ext.backbone_.body.state_dict())
    prep = ext.backbone_.preprocessing

    ext.transform(X[: args.batch_size])  # warm-up both
    hand_written(body, X[: args.batch_size], prep, args.batch_size, device)
    t_hand, out_hand, t_lib, out_lib = best_of_interleaved(
        lambda: hand_written(body, X, prep, args.batch_size, device),
        lambda: ext.transform(X), args.repeats)
    assert np.allclose(out_lib, out_hand, atol=5e-2), "the two loops must compute the same"
    auto_is_fp32 = autocast_dtype(device, "auto") is None

    def fp32_time(fn, t_same):
        """The hand-written loop in float32 (the same loop when "auto" is float32)."""
        return t_same if auto_is_fp32 else min(_timed(fn)[0] for _ in range(args.repeats))

    t_fp32 = fp32_time(lambda: hand_written(body, X, prep, args.batch_size, device,
                                            "float32"), t_hand)
    # the path the extractor recorded, and the hand-written loop's ("auto" on this device)
    path = sides(sktransfer=path_of(ext.transform_cost_), hand_loop=path_of(device, "auto"))
    rows = [("uint8 array", args.n / t_lib, args.n / t_hand, args.n / t_fp32, path)]

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, arr in enumerate(X):
            paths.append(str(Path(tmp) / f"{i}.jpg"))
            Image.fromarray(arr).save(paths[-1], quality=90)
        t_hand_p, _, t_lib_p, _ = best_of_interleaved(
            lambda: hand_written_paths(body, paths, prep, args.batch_size, device),
            lambda: ext.transform(paths), args.repeats)
        t_fp32_p = fp32_time(lambda: hand_written_paths(body, paths, prep, args.batch_size,
                                                        device, "float32"), t_hand_p)
        path = sides(sktransfer=path_of(ext.transform_cost_),
                     hand_loop=path_of(device, "auto"))
        rows.append(("JPEG paths", args.n / t_lib_p, args.n / t_hand_p, args.n / t_fp32_p,
                     path))

    print(f"device={device} model={args.model} n={args.n} batch_size={args.batch_size} "
          f"torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"auto = {autocast_dtype(device, 'auto') or torch.float32} on this device")
    print(f"{'input':<12} {'sktransfer img/s':>17} {'hand-written img/s':>19} {'ratio':>6} "
          f"{'hand fp32 img/s':>16} {'auto':>6}  path (hand fp32: float32)")
    records = []
    for name, lib, hand, fp32, path in rows:
        print(f"{name:<12} {lib:>17.1f} {hand:>19.1f} {lib / hand:>6.3f} {fp32:>16.1f} "
              f"{lib / fp32:>6.3f}  {path}")
        records.append({"input": name, "sktransfer_img_s": lib, "hand_img_s": hand,
                        "ratio": lib / hand, "hand_fp32_img_s": fp32,
                        "auto_ratio": lib / fp32, "path": path})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda"
        else None, "cpu": platform.processor() or platform.machine(),
        "model": args.model, "n": args.n, "batch_size": args.batch_size,
        "torch": torch.__version__, "results": records}, indent=2))


if __name__ == "__main__":
    main()
