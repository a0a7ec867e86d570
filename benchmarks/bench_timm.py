"""timm backbones: PretrainedFeatureExtractor vs a hand-written loop with timm's own transforms.

For a timm ConvNeXt and a timm ViT (random init: speed does not depend on the weights), on
JPEG files: the baseline is what a timm user writes, ``timm.data.create_transform`` on PIL
images in a ``DataLoader`` with 4 worker processes, then the model (``num_classes=0``:
pooled pre-logits features) under ``inference_mode`` in channels_last; sktransfer is
``PretrainedFeatureExtractor("timm:<name>", weights=None).transform(paths)``. Both use the
model's own data config. Best of ``--repeats`` interleaved runs; target ratio >= 0.95.
Each row names the arithmetic path both ran in (``path``; the timm loop runs on the CPU in
float32, sktransfer where ``device="auto"`` puts it, in float32).

Run: .venv/bin/python benchmarks/bench_timm.py [--models convnext_atto vit_tiny_patch16_224]
Writes benchmarks/results/timm.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import path_of, sides
from bench_extraction import best_of_interleaved


def hand_written_timm(net, paths, batch_size):
    """The loop a timm user writes: timm's transforms in DataLoader workers, then the model."""
    import timm
    from torch.utils.data import DataLoader, Dataset

    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(net))

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as img:
                return transform(img.convert("RGB"))

    net = net.to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for x in DataLoader(Files(), batch_size=batch_size, num_workers=4):
            out.append(net(x.contiguous(memory_format=torch.channels_last)).float().numpy())
    return np.concatenate(out)


def main(argv=None):
    import timm

    from sktransfer import PretrainedFeatureExtractor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["convnext_atto", "vit_tiny_patch16_224"])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/timm.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.n):
            paths.append(str(Path(tmp) / f"{i}.jpg"))
            arr = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
            Image.fromarray(arr).save(paths[-1], quality=90)
        for name in args.models:
            ext = PretrainedFeatureExtractor(f"timm:{name}", weights=None,
                                             batch_size=args.batch_size,
                                             precision="float32").fit()
            net = timm.create_model(name, pretrained=False, num_classes=0).eval()
            net.load_state_dict(ext.backbone_.body.net.state_dict())
            ext.transform(paths[: args.batch_size])  # warm-up both
            hand_written_timm(net, paths[: args.batch_size], args.batch_size)
            t_hand, out_hand, t_lib, out_lib = best_of_interleaved(
                lambda net=net: hand_written_timm(net, paths, args.batch_size),
                lambda ext=ext: ext.transform(paths), args.repeats)
            # the timm loop stays on the CPU: name the devices when sktransfer's is another
            cost = ext.transform_cost_
            gpu = cost.device != "cpu"
            path = sides(sktransfer=path_of(cost, show_device=gpu),
                         timm_loop=path_of("cpu", show_device=gpu))
            cos = float(np.mean(np.sum(out_lib * out_hand, 1) / (
                np.linalg.norm(out_lib, axis=1) * np.linalg.norm(out_hand, axis=1))))
            row = {"model": name, "sktransfer_img_s": args.n / t_lib,
                   "timm_loop_img_s": args.n / t_hand, "ratio": t_hand / t_lib,
                   "embedding_cosine": cos, "path": path}
            records.append(row)
            print(f"{name:<24} sktransfer {row['sktransfer_img_s']:6.1f} img/s  timm loop "
                  f"{row['timm_loop_img_s']:6.1f} img/s  ratio {row['ratio']:.3f}  "
                  f"cosine {cos:.4f}  [{path}]", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"torch": torch.__version__,
                                          "timm": timm.__version__, "n": args.n,
                                          "results": records}, indent=2))


if __name__ == "__main__":
    main()
