"""Code in the README and docs runs, so it cannot rot.

Python blocks of each page run in order in one namespace; ``sktransfer ...`` lines of bash
blocks run as commands. Both run offline in a temporary folder, with seeded weights in the
torch hub cache for the torchvision models the pages load by name.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import models as tvm

from sktransfer.cli import main

from ._helpers import TINY_CLIP, cache_weights

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text()) if lang == language]


@pytest.fixture
def docs_env(tmp_path, torch_home, monkeypatch):
    cache_weights(tvm.ResNet18_Weights.DEFAULT)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = ["path,brightness"]
    for label, (lo, hi) in {"cats": (0, 100), "dogs": (150, 256)}.items():
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(lo, hi, size=(48, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "images" / label / f"{i}.jpg")
            rows.append(f"{label}/{i}.jpg,{arr.mean() / 255:.4f}")
    (tmp_path / "targets.csv").write_text("\n".join(rows) + "\n")  # for regression lines
    (tmp_path / "tiny_clip").symlink_to(TINY_CLIP)  # the zero-shot pages' stand-in CLIP
    return tmp_path


def test_pages_have_code_to_check():
    assert sum(len(blocks(p, "python")) for p in PAGES) >= 6
    assert any(line.startswith("sktransfer ") for p in PAGES for b in blocks(p, "bash")
               for line in b.splitlines())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("error::sklearn.exceptions.FitFailedWarning")  # a broken example
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")],
                         ids=lambda p: p.name)
def test_python_blocks_run(page, docs_env, no_network):
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page, "python")):
        try:
            exec(compile(code, f"{page.name}[python block {i}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python block {i} failed:\n{code}") from exc


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    line.startswith("sktransfer ") for b in blocks(p, "bash") for line in b.splitlines())],
    ids=lambda p: p.name)
def test_command_lines_run(page, docs_env, capsys):
    """Each line runs through the command line's ``main`` in this process (the installed
    entry point in a fresh process is tested in test_cli.py; here the lines are the point)."""
    for block in blocks(page, "bash"):
        for line in block.splitlines():
            if not line.startswith("sktransfer "):
                continue
            argv = shlex.split(line)[1:]
            if argv[0] in ("extract", "fit"):
                argv.append("-q")
            code = main(argv)
            assert code == 0, f"{page.name}: {line}\n{capsys.readouterr().err}"
