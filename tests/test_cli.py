"""The sktransfer command line, end to end on a temporary image folder."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sktransfer import _runtime
from sktransfer.cli import main

TINY = ["--model", "tests._helpers:tiny_cnn", "--image-size", "16", "-q"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two classes of 8 images (dark vs bright), one stray text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, (lo, hi) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (root / label).mkdir(parents=True)
        for i in range(8):
            arr = rng.integers(lo, hi, size=(20, 20, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / label / f"{label}{i}.png")
    (root / "dark" / "notes.txt").write_text("not an image")
    return root


def run(*argv: str) -> int:
    return main([str(a) for a in argv])


def test_help_for_every_command_via_the_installed_entry_point():
    for command in ([], ["extract"], ["fit"], ["predict"]):
        result = subprocess.run([sys.executable, "-m", "sktransfer", *command, "--help"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "usage: sktransfer" in result.stdout and "exit codes" in result.stdout


def test_extract_npy_csv_parquet(folder, tmp_path, capsys):
    assert run("extract", folder, "-o", tmp_path / "emb.npy", *TINY) == 0
    emb = np.load(tmp_path / "emb.npy")
    index = pd.read_csv(tmp_path / "emb_index.csv")
    assert emb.shape == (16, 16) and len(index) == 16
    assert sorted(set(index["label"])) == ["bright", "dark"]
    assert "skipped 1 file(s)" in capsys.readouterr().err  # notes.txt
    assert run("extract", folder, "-o", tmp_path / "emb.csv", *TINY) == 0
    frame = pd.read_csv(tmp_path / "emb.csv")
    assert list(frame.columns[:2]) == ["path", "label"] and frame.shape == (16, 18)
    np.testing.assert_allclose(frame.iloc[:, 2:].to_numpy(), emb, rtol=1e-5, atol=1e-6)
    assert run("extract", folder, "-o", tmp_path / "emb.parquet", *TINY) == 0
    assert pd.read_parquet(tmp_path / "emb.parquet").shape == (16, 18)


@pytest.mark.parametrize("strategy", ["frozen", "finetune"])
def test_fit_then_predict_writes_csv(folder, tmp_path, capsys, strategy):
    model = tmp_path / "model.joblib"
    extra = ["--epochs", "3", "--lr", "0.05"] if strategy == "finetune" else []
    assert run("fit", folder, "-o", model, "--strategy", strategy, *extra, *TINY) == 0
    out = capsys.readouterr().out
    assert "16 images, 2 classes: bright (8), dark (8)" in out and f"strategy: {strategy}" in out
    preds = tmp_path / "preds.csv"
    assert run("predict", model, folder / "dark", folder / "bright" / "bright0.png",
               "-o", preds) == 0
    rows = list(csv.DictReader(open(preds)))
    assert list(rows[0]) == ["path", "label", "proba_bright", "proba_dark"]
    assert len(rows) == 9
    for row in rows:
        assert abs(float(row["proba_bright"]) + float(row["proba_dark"]) - 1) < 1e-4
    if strategy == "frozen":  # dark vs bright is easy for the frozen features + LR
        assert all(row["label"] in row["path"] for row in rows)


def _unlabelled_folder(tmp_path):
    """Six unlabelled images, for --unlabelled."""
    target = tmp_path / "phone"
    target.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(40, 200, size=(20, 20, 3), dtype=np.uint8)).save(
            target / f"t{i}.png")
    return target


def test_fit_with_unlabelled_images_adapts_then_predicts(folder, tmp_path, capsys):
    target = _unlabelled_folder(tmp_path)
    model = tmp_path / "adapted.joblib"
    assert run("fit", folder, "-o", model, "--unlabelled", target, "--adapt", "coral",
               "--epochs", "2", "--freeze-epochs", "0", "--cv", "2", *TINY) == 0
    out = capsys.readouterr().out
    assert "6 unlabelled images (domain adaptation: coral)" in out
    assert "strategy: domain adaptation (coral)" in out
    assert "2-fold cv accuracy (labelled images)" in out
    import joblib

    fitted = joblib.load(model)
    assert type(fitted).__name__ == "DomainAdaptationClassifier"
    assert fitted.method == "coral" and list(fitted.classes_) == ["bright", "dark"]
    assert "domain_loss" in fitted.net_.history[-1]
    assert run("predict", model, target, "-o", tmp_path / "p.csv") == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 6
    assert run("fit", folder, "-o", model, "--unlabelled", target, "--strategy", "auto",
               *TINY) == 2
    assert "--strategy auto does not apply" in capsys.readouterr().err


def test_fit_with_unlabelled_images_uses_the_adapters_defaults(folder, tmp_path, capsys):
    """Options not given are DomainAdaptationClassifier's (chosen for adaptation), not
    the fine-tuning command's (--unfreeze 1, --freeze-epochs 2), and the guard reports."""
    import joblib

    target = _unlabelled_folder(tmp_path)
    model = tmp_path / "adapted.joblib"
    assert run("fit", folder, "-o", model, "--unlabelled", target, "--epochs", "2",
               *TINY) == 0
    out = capsys.readouterr().out
    fitted = joblib.load(model)
    defaults = fitted.__class__()
    assert (fitted.unfreeze, fitted.freeze_epochs, fitted.method, fitted.adabn) == (
        defaults.unfreeze, defaults.freeze_epochs, defaults.method, True)
    assert fitted.max_epochs == 2
    assert f"(domain adaptation: {defaults.method})" in out
    check = fitted.adaptation_check_
    assert (f"adaptation check (im on the unlabelled images): adapted {check.adapted:.3f}, "
            f"source-only {check.source_only:.3f}") in out


@pytest.mark.precision  # the cost line names the dtype "auto" chose
def test_fit_auto_cross_validates_and_picks(folder, tmp_path, capsys):
    model = tmp_path / "auto.joblib"
    code = run("fit", folder, "-o", model, "--strategy", "auto", "--cv", "2", "--epochs", "2",
               "--freeze-epochs", "1", *TINY)
    assert code == 0
    out = capsys.readouterr().out
    assert "cv accuracy   fit s    TFLOP   (per cross-validation fit)" in out
    rows = {}  # strategy -> (cv accuracy, fit s, TFLOP per cross-validation fit)
    for line in out.splitlines():
        if line.startswith("  frozen") or line.startswith("  finetune"):
            *name, score, seconds, tflop = line.split()
            rows[" ".join(name)] = (float(score), float(seconds), float(tflop))
    assert list(rows) == ["frozen", "finetune unfreeze=0", "finetune unfreeze=1",
                          "finetune unfreeze=2"]
    # frozen embeds each image once; fine-tuning runs epochs of forward and backward passes
    # and trains more layers, so costs more, at each depth
    flops = [row[2] for row in rows.values()]
    assert 0 < flops[0] < flops[1] < flops[2] < flops[3]
    assert all(row[1] > 0 for row in rows.values())
    assert "strategy: frozen" in out  # 1.000 for frozen on dark vs bright
    assert "2-fold cv accuracy" in out and model.exists()
    # the line names the dtype precision="auto" computes in on this CPU (bfloat16 where it
    # is native or forced, float32 elsewhere), once: fit and transform used the same
    auto = _runtime.precision_name(_runtime.autocast_dtype(torch.device("cpu"), "auto"))
    assert "final fit (network): " in out and f"TFLOP on cpu ({auto})" in out


def test_predict_to_stdout(folder, tmp_path, capsys):
    model = tmp_path / "m.joblib"
    run("fit", folder, "-o", model, *TINY)
    capsys.readouterr()
    assert run("predict", model, folder / "bright" / "bright1.png") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("path,label,proba_bright") and len(lines) == 2


def test_bad_folder_errors(tmp_path, capsys):
    assert run("fit", tmp_path / "missing", "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "folder not found" in capsys.readouterr().err
    (tmp_path / "one" / "only").mkdir(parents=True)
    assert run("fit", tmp_path / "one", "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "one subfolder per class (at least 2)" in capsys.readouterr().err
    (tmp_path / "one" / "other").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "one" / "other" / "a.png")
    assert run("fit", tmp_path / "one", "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "only holds no image file" in capsys.readouterr().err


def test_non_image_file_is_named(folder, tmp_path, capsys):
    (folder / "bright" / "fake.jpg").write_text("hello")
    assert run("fit", folder, "-o", tmp_path / "m.joblib", *TINY) == 2
    err = capsys.readouterr().err
    assert "fake.jpg" in err and "not a readable image" in err
    assert not (tmp_path / "m.joblib").exists()  # no half-written model


def test_unreadable_model_exit_code(folder, tmp_path, capsys):
    bad = tmp_path / "bad.joblib"
    bad.write_text("garbage")
    assert run("predict", bad, folder) == 3
    assert "cannot read model file" in capsys.readouterr().err
    assert run("predict", tmp_path / "none.joblib", folder) == 3
    assert "model file not found" in capsys.readouterr().err


def test_bad_model_spec(folder, tmp_path, capsys):
    assert run("extract", folder, "-o", tmp_path / "e.npy", "--model", "nope.mod:f") == 2
    assert "cannot import 'f' from 'nope.mod'" in capsys.readouterr().err
    assert run("extract", folder, "-o", tmp_path / "e.txt", *TINY) == 2
    assert "use a .npy, .csv or .parquet" in capsys.readouterr().err


def test_fine_tuned_model_as_safetensors(folder, tmp_path, capsys):
    args = ["--strategy", "finetune", "--epochs", "2", "--lr", "0.05", *TINY]
    assert run("fit", folder, "-o", tmp_path / "m.joblib", *args) == 0
    assert run("fit", folder, "-o", tmp_path / "m.safetensors", *args) == 0
    for name in ("m.joblib", "m.safetensors"):
        extra = ["--model", "tests._helpers:tiny_cnn"] if name.endswith("safetensors") else []
        assert run("predict", tmp_path / name, folder, "-o", tmp_path / f"{name}.csv",
                   *extra) == 0
    assert (tmp_path / "m.joblib.csv").read_text() == (tmp_path / "m.safetensors.csv").read_text()
    capsys.readouterr()
    # without the architecture of a custom network: a clear error, exit code 3
    assert run("predict", tmp_path / "m.safetensors", folder) == 3
    assert "pass model=" in capsys.readouterr().err
    # a frozen-features Pipeline cannot be written pickle-free: said before any work
    assert run("fit", folder, "-o", tmp_path / "p.safetensors", *TINY) == 2
    assert "fine-tuned models only" in capsys.readouterr().err


@pytest.fixture
def regression_folder(tmp_path: Path) -> tuple[Path, Path]:
    """12 images whose brightness is the target, listed in a CSV (one row per image)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shots"
    root.mkdir()
    rows = []
    for i in range(12):
        level = int(rng.integers(0, 256))
        arr = np.clip(rng.normal(level, 10, size=(20, 20, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"shot{i}.png")
        rows.append({"path": f"shot{i}.png", "brightness": level / 255, "noise": i})
    table = tmp_path / "targets.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return root, table


@pytest.mark.parametrize("strategy", ["frozen", "finetune"])
def test_fit_regression_then_predict(regression_folder, tmp_path, capsys, strategy):
    root, table = regression_folder
    model = tmp_path / f"reg_{strategy}.joblib"
    assert run("fit", "--task", "regression", root, "--targets", table, "--target-columns",
               "brightness", "--strategy", strategy, "--epochs", "3", "--cv", "2", "-o",
               model, *TINY) == 0
    out = capsys.readouterr().out
    assert "12 images, targets: brightness" in out and "2-fold cv R^2" in out
    preds = tmp_path / "preds.csv"
    assert run("predict", model, root, "-o", preds) == 0
    frame = pd.read_csv(preds)
    assert len(frame) == 12 and np.isfinite(frame.iloc[:, 1]).all()
    expected = "brightness" if strategy == "finetune" else "prediction"
    assert list(frame.columns) == ["path", expected]


def test_fit_regression_two_targets_as_safetensors(regression_folder, tmp_path, capsys):
    root, table = regression_folder
    model = tmp_path / "reg.safetensors"
    assert run("fit", "--task", "regression", root, "--targets", table, "--strategy",
               "finetune", "--epochs", "2", "-o", model, *TINY) == 0
    capsys.readouterr()
    assert run("predict", model, root, "--model", "tests._helpers:tiny_cnn") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "path,brightness,noise" and len(out) == 13


def test_regression_input_errors_name_the_row(regression_folder, tmp_path, capsys):
    root, table = regression_folder
    assert run("fit", "--task", "regression", root, "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "needs --targets" in capsys.readouterr().err
    frame = pd.read_csv(table).astype({"brightness": object})
    frame.loc[3, "brightness"] = "bright"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    assert run("fit", "--task", "regression", root, "--targets", tmp_path / "bad.csv",
               "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "row 5: target 'brightness' is 'bright', not a number" in capsys.readouterr().err
    frame = pd.read_csv(table)
    frame.loc[0, "path"] = "missing.png"
    frame.to_csv(tmp_path / "bad2.csv", index=False)
    assert run("fit", "--task", "regression", root, "--targets", tmp_path / "bad2.csv",
               "-o", tmp_path / "m.joblib", *TINY) == 2
    assert "row 2: image" in capsys.readouterr().err


@pytest.fixture
def mask_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Six JPEG photo collages in subfolders, their label PNGs in a flat folder."""
    from sktransfer.datasets import load_photo_collage

    X, masks = load_photo_collage(6, size=24, seed=0)
    images, labels = tmp_path / "images", tmp_path / "masks"
    for i, (x, m) in enumerate(zip(X, masks, strict=True)):
        sub = images / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(sub / f"c{i}.jpg")
        labels.mkdir(exist_ok=True)
        Image.fromarray(m.astype(np.uint8)).save(labels / f"c{i}.png")
    return images, labels


@pytest.mark.parametrize("suffix", [".joblib", ".safetensors"])
def test_fit_segmentation_then_predict_writes_png_masks(mask_folders, tmp_path, capsys,
                                                        suffix):
    images, masks = mask_folders
    model = tmp_path / f"seg{suffix}"
    assert run("fit", images, "--task", "segmentation", "--masks", masks, "-o", model,
               "--strategy", "finetune", "--epochs", "2", "--cv", "2", *TINY) == 0
    out = capsys.readouterr().out
    assert "6 images with masks" in out and "2-fold cv mean IoU" in out
    extra = ["--model", "tests._helpers:tiny_cnn"] if suffix == ".safetensors" else []
    assert run("predict", model, images, "-o", tmp_path / "pred", *extra) == 0
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == [f"c{i}.png" for i in range(6)]
    png = Image.open(tmp_path / "pred" / "c3.png")
    assert png.mode == "P" and png.size == (24, 24)  # each image's own size
    assert set(np.unique(np.array(png))) <= {0, 1}  # pixel values are the class indices


def test_segmentation_command_line_errors(mask_folders, tmp_path, capsys):
    images, masks = mask_folders
    assert run("fit", images, "--task", "segmentation", "-o", tmp_path / "m.joblib",
               *TINY) == 2
    assert "--task segmentation needs --masks DIR" in capsys.readouterr().err
    (masks / "c4.png").unlink()
    assert run("fit", images, "--task", "segmentation", "--masks", masks, "-o",
               tmp_path / "m.joblib", *TINY) == 2
    err = capsys.readouterr().err
    assert "no mask for" in err and "c4.jpg" in err
    Image.new("L", (10, 10)).save(masks / "c4.png")  # the wrong size
    assert run("fit", images, "--task", "segmentation", "--masks", masks, "-o",
               tmp_path / "m.joblib", "--epochs", "1", *TINY) == 2
    assert "is 10x10 (HxW) but its image" in capsys.readouterr().err
    Image.new("L", (24, 24)).save(masks / "c4.png")
    assert run("fit", images, "--task", "segmentation", "--masks", masks, "-o",
               tmp_path / "m.joblib", "--epochs", "2", *TINY) == 0
    capsys.readouterr()
    assert run("predict", tmp_path / "m.joblib", images) == 2
    assert "writes one PNG mask per image: pass -o FOLDER" in capsys.readouterr().err


def test_fit_segmentation_auto_picks_the_unfreeze_depth_by_cv_iou(mask_folders, tmp_path,
                                                                  capsys):
    images, masks = mask_folders
    assert run("fit", images, "--task", "segmentation", "--masks", masks, "-o",
               tmp_path / "seg.joblib", "--strategy", "auto", "--epochs", "2", *TINY) == 0
    out = capsys.readouterr().out
    assert out.count("cv mean IoU") == 4  # one row per depth, then the report
    assert "strategy: finetune (unfreeze=" in out and "3-fold cv mean IoU" in out
