"""Run every benchmark and write one table (Markdown) plus JSON: `make bench`.

(a) extraction throughput vs a hand-written torch loop (arrays and JPEG paths), target >= 0.95;
(b) fine-tune time per epoch vs a hand-written loop, target <= 1.10;
(c) GridSearchCV wall time with and without the embedding cache, target >= 2/3 of N*K;
(d) scaling with N up to 20,000 images: time linear, peak memory flat (GPU memory released
    after the transform, where there is a GPU);
(e) hostile and damaged files: read or clear error, 0 crashes;
(f) timm backbones vs timm's own loop, target >= 0.95;
(g) 2,000 JPEGs on a 2-worker Dask LocalCluster vs one process, target >= 0.8, scheduler
    overhead < 5% of a task;
(h) segmentation (FCN-8s) training time per epoch and predict images/s vs a hand-written
    FCN loop, targets <= 1.10 and >= 0.95 (the mean-IoU comparison runs on its own:
    bench_segmentation.py --part quality);
(i) ZeroShotClassifier image embedding vs open_clip's own loop, target >= 0.95, and
    few-shot accuracy vs zero-shot and LogisticRegression (tiny CLIP);
(j) ONNX export (export_onnx) of EfficientNet-Lite0 (real ImageNet weights) + logistic
    regression and of a fine-tuned Lite0: onnxruntime int8 (static, calibrated) predict
    vs the library's own default predict, target >= 1.3x, at <= 0.5 points of accuracy
    lost (sklearn digits, region patches); float32 graph, file sizes alongside.
Each row's "path" names the arithmetic each side ran in (native or emulated bf16, float32,
GPU autocast), so a figure reads right wherever it was measured.
Results go to benchmarks/results/ (summary.md, summary.json and one JSON per benchmark).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import bench_cache
import bench_dask
import bench_extraction
import bench_finetune
import bench_hostile
import bench_onnx
import bench_scaling
import bench_segmentation
import bench_timm
import bench_zero_shot

RESULTS = Path("benchmarks/results")


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()  # before any benchmark sets its own
    bench_extraction.main([])
    bench_finetune.main([])
    cache = bench_cache.main([])
    scaling = bench_scaling.main([])
    hostile = bench_hostile.main([])
    bench_timm.main([])
    dask_result = bench_dask.main([])
    bench_segmentation.main(["--part", "speed"])
    zero_shot = bench_zero_shot.main([])
    onnx_result = bench_onnx.main(["--threads", str(threads)])
    segmentation = json.loads((RESULTS / "segmentation.json").read_text())["speed"]
    timm_rows = json.loads((RESULTS / "timm.json").read_text())["results"]
    extraction = json.loads((RESULTS / "extraction.json").read_text())
    finetune = json.loads((RESULTS / "finetune.json").read_text())
    machine = (f"{platform.machine()}, {threads} threads, "
               + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
               + f", torch {torch.__version__}")
    rows = [(f"(a) extraction, {r['input']} ({extraction['model']})",
             f"{r['sktransfer_img_s']:.1f} img/s vs {r['hand_img_s']:.1f} img/s",
             f"{r['ratio']:.3f}", ">= 0.95", r["ratio"] >= 0.95, r["path"])
            for r in extraction["results"]]
    rows.append((f"(b) fine-tune epoch ({finetune['model']}, unfreeze={finetune['unfreeze']})",
                 f"{finetune['sktransfer_s_per_epoch']:.2f} s vs "
                 f"{finetune['hand_s_per_epoch']:.2f} s", f"{finetune['ratio']:.3f}", "<= 1.10",
                 finetune["ratio"] <= 1.10, finetune["path"]))
    rows += [(f"(f) timm extraction, JPEG paths ({r['model']}) vs timm's transforms",
              f"{r['sktransfer_img_s']:.1f} img/s vs {r['timm_loop_img_s']:.1f} img/s",
              f"{r['ratio']:.3f}", ">= 0.95", r["ratio"] >= 0.95, r["path"])
             for r in timm_rows]
    rows.append((f"(c) GridSearchCV {cache['candidates']}x{cache['folds']} with cache",
                 f"{cache['with_cache_s']:.1f} s vs {cache['without_cache_s']:.1f} s",
                 f"{cache['speedup']:.1f}x", f">= {cache['target_speedup']:.1f}x",
                 cache["speedup"] >= cache["target_speedup"], f"sktransfer: {cache['path']}"))
    rows.append((f"(c) fully cached fit + transform, {cache['n_images']} images",
                 f"{cache['cached_fit_s']:.3f} s, {cache['cached_flop_counts']} FLOP counts, "
                 f"{cache['cached_images_embedded']} images embedded", "-",
                 "no FLOP count, no image", cache["cached_flop_counts"] == 0
                 and cache["cached_images_embedded"] == 0, f"sktransfer: {cache['path']}"))
    first, last = scaling[0], scaling[-1]
    scaling_path = f"sktransfer: {bench_scaling.path_text(scaling)}"
    time_ratio = last["seconds"] / first["seconds"]
    n_ratio = last["n"] / first["n"]
    rows.append((f"(d) N {first['n']} -> {last['n']}: time",
                 f"{first['seconds']:.1f} s -> {last['seconds']:.1f} s", f"{time_ratio:.2f}x",
                 f"~{n_ratio:.0f}x (linear)", 0.7 * n_ratio <= time_ratio <= 1.3 * n_ratio,
                 scaling_path))
    growth = last["peak_growth_mb"] - first["peak_growth_mb"]
    output = last["output_mb"] - first["output_mb"]
    rows.append((f"(d) N {first['n']} -> {last['n']}: peak memory growth",
                 f"{first['peak_growth_mb']:.0f} MB -> {last['peak_growth_mb']:.0f} MB",
                 f"+{growth:.0f} MB", f"<= output +{output:.0f} MB + 50 MB",
                 growth <= output + 50, scaling_path))
    if "gpu_allocated_after_mb" in last:
        rows.append((f"(d) GPU memory after transform of {last['n']}",
                     f"{last['gpu_allocated_after_mb']:.1f} MB allocated, "
                     f"{last['gpu_reserved_after_mb']:.1f} MB reserved "
                     f"(peak {last['gpu_peak_mb']:.0f} MB)", "", "0 MB allocated",
                     last["gpu_allocated_after_mb"] == 0, scaling_path))
    rows.append((f"(e) hostile + damaged files ({hostile['files']})",
                 f"{hostile['read']} read, {hostile['error']} named errors",
                 f"{hostile['crash']} crashes", "0 crashes",
                 hostile["crash"] == 0 and hostile["hostile_as_expected"], "no network"))
    rows.append((f"(g) Dask, {dask_result['n']} JPEGs, {dask_result['workers']}-worker "
                 f"LocalCluster vs one process ({dask_result['model']})",
                 f"{dask_result['cluster_img_s']:.1f} img/s vs "
                 f"{dask_result['single_img_s']:.1f} img/s", f"{dask_result['ratio']:.2f}",
                 ">= 0.8", dask_result["ratio"] >= 0.8, dask_result["path"]))
    rows.append(("(g) Dask scheduler overhead per task / partition task time",
                 f"{dask_result['task_overhead_ms']:.2f} ms / "
                 f"{dask_result['mean_task_s']:.2f} s",
                 f"{100 * dask_result['overhead_share']:.2f}%", "< 5%",
                 dask_result["overhead_share"] < 0.05, dask_result["path"]))
    rows.append(("(i) ZeroShotClassifier embedding, JPEG paths (open_clip ViT-B-32) vs "
                 "open_clip's loop",
                 f"{zero_shot['speed']['img_s']['float32']:.1f} img/s vs "
                 f"{zero_shot['speed']['img_s']['open_clip']:.1f} img/s",
                 f"{zero_shot['speed']['ratio_float32']:.3f}", ">= 0.95",
                 zero_shot["speed"]["ratio_float32"] >= 0.95,
                 zero_shot["speed"]["path_float32"]))
    rows.append(("(i) few-shot (1, 2, 4 per class) vs zero-shot and LogisticRegression, "
                 "tiny CLIP", f"text_anchor "
                 f"{zero_shot['accuracy']['choice']['recommended']:g}", "-", "beats both",
                 zero_shot["accuracy"]["choice"]["beats_both_at_all_k"], "float32"))
    rows.append(("(h) segmentation, FCN-8s resnet18: training s/epoch vs hand-written",
                 f"{segmentation['sktransfer_s_per_epoch']:.2f} s vs "
                 f"{segmentation['hand_s_per_epoch']:.2f} s",
                 f"{segmentation['train_ratio']:.3f}", "<= 1.10",
                 segmentation["train_ratio"] <= 1.10, segmentation["path"]))
    rows.append(("(h) segmentation, FCN-8s resnet18: predict img/s vs hand-written",
                 f"{segmentation['sktransfer_predict_img_s']:.1f} img/s vs "
                 f"{segmentation['hand_predict_img_s']:.1f} img/s",
                 f"{segmentation['predict_ratio']:.3f}", ">= 0.95",
                 segmentation["predict_ratio"] >= 0.95, segmentation["path"]))
    rows += [(f"(j) ONNX: {t['what']}", t["measured"], t["value"], t["target"], t["met"],
              t["path"]) for t in onnx_result["targets"]]
    lines = [f"Machine: {machine}", "",
             "| benchmark | measured | ratio | path | target | met |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {path} | {d} | {'yes' if ok else 'NO'} |"
              for a, b, c, d, ok, path in rows]
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "summary.json").write_text(json.dumps(
        {"machine": machine, "rows": [dict(zip(("benchmark", "measured", "ratio", "target",
                                                "met", "path"), r, strict=True)) for r in rows]},
        indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
