"""The command line's fit options of issue 28: label columns from a CSV (several tasks),
distillation from a saved teacher."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from sktransfer.cli import main

TINY = ["--model", "tests._helpers:tiny_cnn", "--image-size", "16", "-q"]


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def _images(folder: Path, n: int, seed: int) -> list[dict]:
    """Images with two labels each: brightness and which side holds a white bar."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        level, side = i % 2, ("left", "right")[(i // 2) % 2]
        arr = rng.integers(0, 100, size=(20, 20, 3), dtype=np.uint8) + 120 * level
        arr[:, :4] = 255 if side == "left" else arr[:, :4]
        arr[:, -4:] = 255 if side == "right" else arr[:, -4:]
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "brightness": ("dark", "bright")[level],
                     "side": side})
    return rows


def test_label_columns_from_a_csv_train_one_network_for_both_tasks(tmp_path, capsys):
    rows = _images(tmp_path / "imgs", 16, 0)
    rows[0]["side"] = ""  # a missing label: only that column's loss is left out
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "brightness", "side"])
        writer.writeheader()
        writer.writerows(rows)
    model = tmp_path / "tasks.joblib"
    assert run("fit", tmp_path / "imgs", "--targets", table, "-o", model, "--strategy",
               "finetune", "--epochs", "2", "--cv", "2", *TINY) == 0
    out = capsys.readouterr().out
    assert "label columns: brightness (2 classes), side (2 classes)" in out
    assert run("predict", model, tmp_path / "imgs", "-o", tmp_path / "p.csv") == 0
    header = next(csv.reader(open(tmp_path / "p.csv")))
    assert header == ["path", "label_0", "label_1", "proba_0_bright", "proba_0_dark",
                      "proba_1_left", "proba_1_right"]
    # frozen features + logistic regression cannot hold two tasks: said before any work
    assert run("fit", tmp_path / "imgs", "--targets", table, "-o", model, *TINY) == 2
    assert "several label columns" in capsys.readouterr().err


def test_fit_with_a_teacher_and_an_unlabelled_pool(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labelled, pool = tmp_path / "images", tmp_path / "pool"
    for label, (lo, hi) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (labelled / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(lo, hi, (20, 20, 3), dtype=np.uint8)).save(
                labelled / label / f"{i}.png")
    pool.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            pool / f"{i}.png")
    teacher = tmp_path / "teacher.joblib"
    assert run("fit", labelled, "-o", teacher, *TINY) == 0
    student = tmp_path / "student.joblib"
    assert run("fit", labelled, "-o", student, "--strategy", "finetune", "--epochs", "2",
               "--teacher", teacher, "--unlabelled-pool", pool, *TINY) == 0
    out = capsys.readouterr().out
    assert "6 unlabelled images taught by the teacher alone" in out
    assert "inference per image: this model" in out
    # the student's file does not carry its teacher
    assert student.stat().st_size < teacher.stat().st_size * 1.5
    assert run("fit", labelled, "-o", student, "--unlabelled-pool", pool, *TINY) == 2
    assert "--unlabelled-pool needs --teacher" in capsys.readouterr().err


def test_fit_with_low_rank_adapters(tmp_path, capsys):
    rows = _images(tmp_path / "imgs", 8, 1)
    folder = tmp_path / "classes"
    for row in rows:
        (folder / row["brightness"]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / row["path"]).rename(folder / row["brightness"] / row["path"])
    model = tmp_path / "lora.safetensors"
    assert run("fit", folder, "-o", model, "--strategy", "finetune", "--unfreeze", "all",
               "--adapter", "lora", "--adapter-rank", "2", "--epochs", "2", "--model",
               "tests._helpers:pointwise_cnn", "--image-size", "16", "-q") == 0
    assert run("predict", model, folder, "--model", "tests._helpers:pointwise_cnn",
               "-o", tmp_path / "p.csv") == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 8
    capsys.readouterr()
    assert run("fit", folder, "-o", tmp_path / "f.joblib", "--adapter", "lora", *TINY) == 2
    assert "--adapter applies to fine-tuning" in capsys.readouterr().err
