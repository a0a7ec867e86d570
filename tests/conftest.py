"""Shared fixtures: tiny models, tiny images, offline weights; and the pytest hooks.

Plain helpers (networks, toy data, fresh-process and offline helpers) are in
``_helpers.py``: tests import them from there, not from here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ._helpers import cache_weights, tiny_cnn

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


@pytest.fixture
def cached_mobilenet(torch_home: Path) -> Path:
    """Seeded mobilenet_v3_small weights placed in the torch hub cache, as a download would."""
    from torchvision import models as tvm

    return cache_weights(tvm.MobileNet_V3_Small_Weights.DEFAULT)
