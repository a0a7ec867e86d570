"""Helpers the tests share: toy data, tiny networks, fresh-process and offline helpers.

What belongs here: plain functions, classes and constants that test modules use (test
modules import them from here, ``from ._helpers import ...``, never from one another or
from ``conftest.py``). Pytest fixtures and hooks stay in ``conftest.py``, which imports
what it needs from here; helpers for one theme with a module of their own stay there
(``hostile_files.py``).

Other processes import this module by its dotted name, ``tests._helpers``: the command
line (``--model tests._helpers:tiny_cnn``), Dask workers (``SlowCountingCNN``) and fresh
interpreters. So it imports neither pytest nor an estimator when it loads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from sktransfer import FineTuneClassifier


# ------------------------------------------------------------------ tiny networks
# A tiny CLIP trained on captioned shapes (tools/train_tiny_clip.py): an open_clip
# "local-dir:" folder with its config and weights.
TINY_CLIP = Path(__file__).parent / "data" / "tiny_clip"


def tiny_cnn(n_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A small CNN with BatchNorm, a pooled body and a Linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_classes),
    )


def pointwise_cnn(seed: int = 0) -> nn.Sequential:
    """A small CNN with pointwise (1x1) convolutions, the layers adapters go into."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )


def digits_cnn(seed: int = 0) -> nn.Sequential:
    """A CNN of three BatchNorm stages with a 5-class head, large enough to learn digits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5),
    )


class SlowCountingCNN(nn.Module):
    """tiny_cnn that sleeps ``delay`` seconds per batch and counts the images it embeds.

    Importable by Dask workers (``tests._helpers``): the count is per process, so a test
    reads each worker's with ``client.run``.
    """

    seen = 0

    def __init__(self, delay: float = 0.0, seed: int = 0):
        super().__init__()
        self.delay = delay
        self.net = tiny_cnn(seed=seed)

    def forward(self, x):
        if x.any():  # the all-zero probes run at fit to size the output do not count
            _wait_at_gate(type(self).seen)
            type(self).seen += len(x)
            time.sleep(self.delay)
        return self.net(x)


def _wait_at_gate(seen: int, *, timeout: float = 120.0) -> None:
    """Hold a process that has embedded ``$SKTRANSFER_TEST_GATE_AFTER`` images until the
    file ``$SKTRANSFER_TEST_GATE`` exists, so a test can interrupt a job mid-way by
    construction rather than by timing (unset: no gate)."""
    gate, after = os.environ.get("SKTRANSFER_TEST_GATE"), os.environ.get(
        "SKTRANSFER_TEST_GATE_AFTER")
    if gate and after and seen >= int(after):
        deadline = time.monotonic() + timeout
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)


def slow_cnn() -> SlowCountingCNN:
    """A factory for the command line: 0.3 s per batch."""
    return SlowCountingCNN(delay=0.3)


# ------------------------------------------------------------------ toy data
RNG = np.random.default_rng(0)
X_TOY = RNG.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
Y_TOY = np.array(["cat", "dog", "emu"] * 8)
X_TOY[Y_TOY == "cat"] //= 3  # darker: learnable
X_TOY[Y_TOY == "emu", :, :8] = 255


def toy(model=None, **params) -> FineTuneClassifier:
    """A FineTuneClassifier on ``model`` (default: a tiny_cnn) sized for ``X_TOY``:
    16-pixel images, 3 epochs, seeded; ``params`` override those settings."""
    from sktransfer import FineTuneClassifier

    defaults = dict(image_size=16, resize_size=16, max_epochs=3, random_state=0, lr=1e-2)
    return FineTuneClassifier(model if model is not None else tiny_cnn(), **{**defaults, **params})


# ------------------------------------------------------------------ offline, fresh processes
def cache_weights(enum, seed: int = 123) -> Path:
    """Write seeded random weights where torchvision's weights API finds ``enum``'s file.

    Tests then exercise the real loading path (weights API + torch hub cache) offline.
    """
    from torchvision import models as tvm

    from sktransfer.backbones._torchvision import cached_file

    path = cached_file(enum)
    if not path.exists():
        torch.manual_seed(seed)
        name = type(enum).__name__.removesuffix("_Weights").lower()
        kwargs = {}
        if name in tvm.list_models(module=tvm.segmentation):  # the file holds it all
            kwargs = {"weights_backbone": None, **({} if name.startswith("lraspp") else
                                                   {"aux_loss": True})}
        state = tvm.get_model(name, weights=None, **kwargs).state_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    return path


LOADER = textwrap.dedent(
    """
    import socket, sys
    def refuse(*args, **kwargs):
        raise OSError("network disabled")
    socket.create_connection = refuse
    socket.socket.connect = refuse
    socket.getaddrinfo = refuse
    import joblib, numpy as np
    model_path, x_path, out_path = sys.argv[1:4]
    if model_path.endswith(".safetensors"):  # pickle-free: sktransfer's own reader
        from sktransfer import import_model
        model = import_model(model_path)
    else:
        model = joblib.load(model_path)
    X = np.load(x_path)
    np.save(out_path, model.predict_proba(X) if hasattr(model, "predict_proba")
            else model.transform(X))
    """
)


def run_in_fresh_process(model_path: Path, X: np.ndarray, tmp_path: Path, env: dict) -> np.ndarray:
    """Load ``model_path`` in a new interpreter with networking disabled; return its output."""
    x_path, out_path = tmp_path / "X.npy", tmp_path / "out.npy"
    np.save(x_path, X)
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(model_path), str(x_path), str(out_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return np.load(out_path)


def offline_env(tmp_path: Path) -> dict:
    """The environment of a child process on a machine without downloaded weights: an
    empty ``TORCH_HOME``, no GPU, and this checkout importable (``tests._helpers``)."""
    empty_home = tmp_path / "empty_torch_home"
    empty_home.mkdir(exist_ok=True)
    env = dict(os.environ, TORCH_HOME=str(empty_home), CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    return env


def default_sigint() -> None:
    """``preexec_fn`` of a child that must take Ctrl-C as a terminal user's process does:
    SIGINT back to its default before exec, so Python installs its handler (a shell
    running the suite in the background, ``make test &``, starts it with SIGINT ignored,
    and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def has_cuda() -> bool:
    """Whether torch sees a CUDA device."""
    return torch.cuda.is_available()
