"""Shared fixtures: tiny models, tiny images, offline weights."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

# codecarbon's hardware detection costs about 2 s in every process that measures energy
# (the CLI and docs tests start many); tests/test_cost.py turns it back on where it is tested.
os.environ["SKTRANSFER_MEASURE_ENERGY"] = "0"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--native-bf16", choices=("detect", "yes", "no", "flip"), default="detect",
        help="what sktransfer's CPU bfloat16 detection answers, so precision='auto' takes "
             "the bf16 path (yes) or the float32 path (no) on any CPU; 'flip' takes the "
             "path opposite to the one 'auto' takes here (make test reruns the precision "
             "tests that way). Sets SKTRANSFER_NATIVE_BF16, which child processes and "
             "xdist workers inherit.")


def pytest_configure(config: pytest.Config) -> None:
    _share_the_cpus()
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller's environment, inherited, decided it
    from sktransfer import _runtime

    choice = config.getoption("--native-bf16")
    if choice == "flip":  # the opposite of what "auto" does here (override included)
        choice = "no" if _runtime.cpu_has_native_bf16() else "yes"
    if choice != "detect":
        os.environ[_runtime.NATIVE_BF16_ENV] = "1" if choice == "yes" else "0"


def _share_the_cpus() -> None:
    """In a pytest-xdist worker, compute with this worker's share of the cores.

    Two workers each running torch's default of one thread per core oversubscribe the CPU
    (OpenMP threads spin waiting for each other): on 2 cores the suite took 393 s that way
    and 206 s with one thread per worker. Child processes (the command line, examples,
    Dask workers) inherit the setting through OMP_NUM_THREADS; tests that set their own
    thread count (``n_threads``) still do.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def pytest_report_header(config: pytest.Config) -> str:
    from sktransfer import _runtime

    forced = os.environ.get(_runtime.NATIVE_BF16_ENV)
    answer = "bfloat16" if _runtime.cpu_has_native_bf16() else "float32"
    return (f"sktransfer: precision='auto' on this CPU computes in {answer} (CPU "
            f"{'has' if _runtime.cpu_detects_native_bf16() else 'lacks'} native bf16"
            f"{f'; {_runtime.NATIVE_BF16_ENV}={forced}' if forced else ''})")


def tiny_cnn(n_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A small CNN with BatchNorm, a pooled body and a Linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_classes),
    )


@pytest.fixture
def tiny_model() -> nn.Sequential:
    return tiny_cnn()


@pytest.fixture
def rgb_uint8() -> np.ndarray:
    """Six 20x24 RGB images, NHWC uint8."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 20, 24, 3), dtype=np.uint8)


@pytest.fixture
def image_files(tmp_path: Path, rgb_uint8: np.ndarray) -> list[Path]:
    """The same six images written as PNG and JPEG files of mixed sizes and modes."""
    paths = []
    for i, arr in enumerate(rgb_uint8):
        img = Image.fromarray(arr)
        if i % 3 == 1:
            img = img.resize((30 + i, 18 + i))
        if i % 3 == 2:
            img = img.convert("L")
        path = tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}"
        img.save(path)
        paths.append(path)
    return paths


LOOPBACK = (None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::")


def _host(address: object) -> object:
    return address[0] if isinstance(address, tuple) else address


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every connection beyond this machine fail, as on an offline machine.

    Loopback stays open (and listening sockets may bind), as on any offline machine: a
    local Dask cluster talks to itself over it.
    """
    originals = {"create_connection": socket.create_connection,
                 "connect": socket.socket.connect, "getaddrinfo": socket.getaddrinfo}

    def guard(name, host_of):
        def call(*args, **kwargs):
            if host_of(args) not in LOOPBACK and not (isinstance(host_of(args), str)
                                                      and host_of(args).startswith("127.")):
                raise OSError("network is disabled in this test")
            return originals[name](*args, **kwargs)

        return call

    monkeypatch.setattr(socket, "create_connection",
                        guard("create_connection", lambda a: _host(a[0])))
    monkeypatch.setattr(socket.socket, "connect", guard("connect", lambda a: _host(a[1])))
    monkeypatch.setattr(socket, "getaddrinfo", guard("getaddrinfo", lambda a: a[0]))


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private TORCH_HOME (nothing cached)."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def cache_weights(enum, seed: int = 123) -> Path:
    """Write seeded random weights where torchvision's weights API finds ``enum``'s file.

    Tests then exercise the real loading path (weights API + torch hub cache) offline.
    """
    from torchvision import models as tvm

    from sktransfer.backbones import _cached_file

    path = _cached_file(enum)
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


@pytest.fixture
def cached_mobilenet(torch_home: Path) -> Path:
    """Seeded mobilenet_v3_small weights placed in the torch hub cache, as a download would."""
    from torchvision import models as tvm

    return cache_weights(tvm.MobileNet_V3_Small_Weights.DEFAULT)


def default_sigint() -> None:
    """``preexec_fn`` of a child that must take Ctrl-C as a terminal user's process does:
    SIGINT back to its default before exec, so Python installs its handler (a shell
    running the suite in the background, ``make test &``, starts it with SIGINT ignored,
    and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def has_cuda() -> bool:
    return torch.cuda.is_available()


class SlowCountingCNN(nn.Module):
    """tiny_cnn that sleeps ``delay`` seconds per batch and counts the images it embeds.

    Importable by Dask workers (``tests.conftest``): the count is per process, so a test
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
