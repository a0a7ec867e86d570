"""``sktransfer inspect``, and the fit options of calibration and reject labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sktransfer.cli import main

TINY = ["--model", "tests._helpers:tiny_cnn", "--image-size", "16", "-q"]


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def _folder(root: Path, n: int, seed: int, flip: int = 0) -> Path:
    """Dark vs bright images; ``flip`` very bright images filed under dark (label errors
    that confident learning must see: brighter than the average bright image)."""
    rng = np.random.default_rng(seed)
    for label, (lo, hi) in {"dark": (0, 90), "bright": (160, 256)}.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            misfiled = label == "bright" and i < flip
            arr = rng.integers(230 if misfiled else lo, hi, size=(20, 20, 3), dtype=np.uint8)
            target = "dark" if misfiled else label
            Image.fromarray(arr).save(root / target / f"{label}{i}.png")
    return root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """A model (frozen features + logistic regression: dark vs bright is easy for it), and
    a held-out folder where two bright images sit under dark."""
    base = tmp_path_factory.mktemp("inspect")
    train = _folder(base / "train", 10, 0)
    model = base / "model.joblib"
    assert run("fit", train, "-o", model, *TINY) == 0
    return model, _folder(base / "held_out", 8, 1, flip=2)


def test_inspect_writes_a_report_and_finds_the_misfiled_images(fitted, tmp_path, capsys):
    model, held_out = fitted
    out = tmp_path / "report"
    assert run("inspect", model, held_out, "-o", out, "--top", "4") == 0
    summary = capsys.readouterr().out
    assert "16 images, 2 classes; accuracy" in summary and "expected calibration" in summary
    for name in ("top_losses.png", "confusion_matrix.png", "reliability.png"):
        with Image.open(out / name) as png:
            assert png.format == "PNG" and min(png.size) > 100
    issues = list(csv.DictReader(open(out / "label_issues.csv")))
    assert set(issues[0]) == {"index", "path", "given", "suggested", "self_confidence"}
    flagged = {Path(row["path"]).name for row in issues}
    # only misfiled images are flagged (which of them reach confident learning's class
    # threshold depends on the tiny random network's features)
    assert flagged and flagged <= {"bright0.png", "bright1.png"}
    assert all(row["given"] == "dark" and row["suggested"] == "bright" for row in issues)
    losses = list(csv.DictReader(open(out / "top_losses.csv")))
    assert len(losses) == 16
    assert {Path(r["path"]).name for r in losses[:2]} == {"bright0.png", "bright1.png"}
    assert float(losses[0]["loss"]) >= float(losses[-1]["loss"])


def test_inspect_errors_name_the_problem(fitted, tmp_path, capsys):
    model, held_out = fitted
    strange = tmp_path / "strange"
    for name in ("grey", "dark"):
        (strange / name).mkdir(parents=True)
        Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(strange / name / "g.png")
    assert run("inspect", model, strange, "-o", tmp_path / "r") == 2
    assert "['grey'] are not classes of the model" in capsys.readouterr().err
    assert run("inspect", model, held_out, "--top", "0") == 2
    assert "--top 0" in capsys.readouterr().err


def test_fit_calibrates_on_the_validation_split_and_rejects(tmp_path, capsys):
    train = _folder(tmp_path / "train", 10, 0)
    model = tmp_path / "m.joblib"
    assert run("fit", train, "-o", model, "--strategy", "finetune", "--epochs", "4",
               "--lr", "0.05", "--validation-fraction", "0.3", "--reject-label", "unknown",
               *TINY) == 0
    assert "temperature" in capsys.readouterr().out
    odd = tmp_path / "odd"
    odd.mkdir()
    stripes = np.zeros((20, 20, 3), np.uint8)
    stripes[::2] = 255
    Image.fromarray(stripes).save(odd / "stripes.png")
    Image.fromarray(np.full((20, 20, 3), (0, 255, 0), np.uint8)).save(odd / "green.png")
    assert run("predict", model, odd, "-o", tmp_path / "p.csv") == 0
    labels = [row["label"] for row in csv.DictReader(open(tmp_path / "p.csv"))]
    assert labels == ["unknown", "unknown"]


def test_fit_refuses_trust_options_without_fine_tuning(tmp_path, capsys):
    train = _folder(tmp_path / "train", 4, 0)
    assert run("fit", train, "-o", tmp_path / "m.joblib", "--reject-label", "x", *TINY) == 2
    assert "--reject-label applies to fine-tuning" in capsys.readouterr().err


def test_inspect_reads_probabilities_in_the_models_column_order(tmp_path, capsys):
    """A zero-shot classifier keeps its classes in the order given (not sorted): the
    log-loss must read each image's column by name."""
    pytest.importorskip("open_clip")
    import joblib

    from sktransfer import ZeroShotClassifier
    from sktransfer.datasets import held_out_combos, load_captioned_shapes

    from ._helpers import TINY_CLIP

    seen, _ = held_out_combos()
    pairs = sorted(seen[:2], reverse=True)
    classes = [f"{c} {s}" for c, s in pairs]  # in reverse order
    clf = ZeroShotClassifier(f"open_clip:local-dir:{TINY_CLIP}", templates=["a {}."],
                             classes=classes, precision="float32").fit()
    assert list(clf.classes_) == classes and classes != sorted(classes)
    images, _, meta = load_captioned_shapes(8, seed=5, combos=pairs * 4)
    folder = tmp_path / "shapes"
    for i, (image, label) in enumerate(zip(images, meta["combo"], strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image)).save(folder / label / f"{i}.png")
    joblib.dump(clf, tmp_path / "zs.joblib")
    assert run("inspect", tmp_path / "zs.joblib", folder, "-o", tmp_path / "r") == 0
    printed = float(capsys.readouterr().out.split("log-loss ")[1].split(",")[0])
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    proba = clf.predict_proba(paths)
    truth = [classes.index(Path(p).parent.name) for p in paths]
    expected = -np.mean(np.log(proba[np.arange(len(paths)), truth]))
    assert printed == pytest.approx(expected, abs=2e-3)
