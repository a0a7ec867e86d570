"""Every script in examples/ runs (with --quick settings) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sktransfer.datasets import load_region_patches

EXAMPLES = Path(__file__).parents[1] / "examples"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested():
    tested = {"pipeline_logistic.py", "grid_search_finetune.py",
              "few_shot_nearest_centroid.py", "predict_app.py", "demo.py",
              "domain_adaptation.py", "zero_shot.py",
              "onnx_app.py"}  # run in test_onnx.py, where importing torch fails
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_pipeline_then_another_app_loads_it(tmp_path):
    model = tmp_path / "model.joblib"
    out = run("pipeline_logistic.py", "--quick", "--save", str(model))
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.4  # 12 classes
    X, _ = load_region_patches(1, seed=5)
    paths = []
    for i, arr in enumerate(X[:3]):
        paths.append(str(tmp_path / f"patch{i}.png"))
        Image.fromarray(arr).save(paths[-1])
    lines = run("predict_app.py", str(model), *paths).strip().splitlines()
    assert len(lines) == 3 and all("(p=" in line for line in lines)


def test_grid_search_example():
    out = run("grid_search_finetune.py", "--quick")
    assert out.count("cv accuracy") == 2 and "best: {" in out and "'group': 'head'" in out


def test_domain_adaptation_example(tmp_path):
    out = run("domain_adaptation.py", "--quick", "--out", str(tmp_path))
    acc = {line[:12].strip(): float(line.split("target accuracy: ")[1].split()[0])
           for line in out.splitlines() if "target accuracy" in line}
    assert set(acc) == {"source only", "defaults", "DANN"}
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert "guard: information maximisation" in out and "looks harmful: " in out
    domain = [float(v) for v in out.split("domain accuracy per epoch: ")[1].split("\n")[0].split()]
    assert len(domain) == 2 and all(0.0 <= v <= 1.0 for v in domain)
    assert (tmp_path / "domain_history.png").stat().st_size > 10_000


def test_few_shot_example():
    out = run("few_shot_nearest_centroid.py", "--quick")
    acc = [float(line.split(": ")[1].split()[0]) for line in out.splitlines()
           if "-shot accuracy" in line]
    assert len(acc) == 3 and acc[2] > 1 / 12 * 3


def test_zero_shot_example():
    out = run("zero_shot.py", "--quick")
    zero = float(out.split("zero-shot accuracy: ")[1].split()[0])
    few = [float(line.split(": ")[1].split()[0]) for line in out.splitlines()
           if line[0].isdigit() and "-shot accuracy: " in line]
    assert zero > 0.5 and len(few) == 3  # 20 classes: chance is 0.05
    assert "pairs never seen in training" in out


def test_demo_quick(tmp_path):
    out = run("demo.py", "--quick", "--out", str(tmp_path))
    assert "frozen features + LogReg" in out and "identical: True" in out
    assert (tmp_path / "strategies.png").stat().st_size > 10_000
    assert (tmp_path / "best_model.joblib").exists()
    iou = float(out.split("test mean IoU ")[1].split(";")[0])
    assert 0.5 < iou <= 1  # two classes: a constant prediction scores about 0.25
    assert (tmp_path / "segmentation.png").stat().st_size > 10_000
    assert (tmp_path / "top_losses.png").stat().st_size > 10_000  # with heat maps
    assert "where it fails: the worst test patches" in out
    rows = {line[:34].strip(): float(line[34:].split()[0]) for line in out.splitlines()
            if line.startswith(("raw pixels", "frozen features", "Lite0 from"))}
    assert rows["frozen features + LogReg"] > rows["raw pixels + LogReg"] + 0.15
    assert np.isfinite(list(rows.values())).all()
    # the cost column: no network for raw pixels; one forward pass per image for the frozen
    # features, far less than training every layer from scratch for epochs
    tflop = {line[:34].strip(): line[34:].split()[2] for line in out.splitlines()
             if line.startswith(("raw pixels", "frozen features", "Lite0 from", "fine-tune ("))}
    assert tflop["raw pixels + LogReg"] == "-"
    assert 0 < float(tflop["frozen features + LogReg"]) < float(tflop["Lite0 from scratch"])
    # predictions reloaded in another process keep the label type the user passed (ints)
    assert "for true labels [" in out
    predicted = out.split("a fresh process predicted ")[1].split(" for true labels")[0]
    assert "'" not in predicted
