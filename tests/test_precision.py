"""precision="auto": bfloat16 on CPUs that compute it in hardware, float32 on the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor, _runtime

from ._helpers import tiny_cnn

pytestmark = pytest.mark.precision

CPU = torch.device("cpu")
X = np.random.default_rng(0).integers(0, 256, size=(6, 18, 18, 3), dtype=np.uint8)
PREP = {"image_size": 16, "resize_size": 16}


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has exactly the given features."""

    def set_features(**features):
        monkeypatch.delenv(_runtime.NATIVE_BF16_ENV, raising=False)  # the CPU answers
        monkeypatch.setattr(_runtime, "cpu_features", lambda: features)

    return set_features


@pytest.mark.parametrize("feature", ["avx512_bf16", "amx_bf16", "bf16", "sve_bf16"])
def test_auto_is_bfloat16_on_cpus_with_native_bf16(cpu_with, feature):
    cpu_with(avx512_f=True, **{feature: True})
    assert _runtime.cpu_has_native_bf16()
    assert _runtime.autocast_dtype(CPU, "auto") == torch.bfloat16


@pytest.mark.parametrize("features", [{}, {"avx512_f": True, "avx512_bw": True,
                                           "avx512_vnni": True, "avx512_bf16": False}])
def test_auto_is_float32_on_other_cpus(cpu_with, features):
    cpu_with(**features)
    assert not _runtime.cpu_has_native_bf16()
    assert _runtime.autocast_dtype(CPU, "auto") is None
    assert _runtime.autocast_dtype(CPU, "bfloat16") == torch.bfloat16  # asked for: given


def test_cpu_features_fall_back_to_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delenv(_runtime.NATIVE_BF16_ENV, raising=False)  # the CPU answers
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
    _runtime.cpu_features.cache_clear()
    try:
        assert _runtime.cpu_features()["avx512_bf16"] is True
        assert _runtime.cpu_has_native_bf16()
    finally:
        _runtime.cpu_features.cache_clear()


def test_this_machines_answer_agrees_with_torchs_own_queries():
    assert _runtime.cpu_features(), "neither torch nor /proc/cpuinfo told the CPU's features"
    if not hasattr(torch.cpu, "_is_avx512_bf16_supported"):
        pytest.skip("this torch has no per-feature queries to compare with")
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("torch's per-feature queries are x86 ones")
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert _runtime.cpu_detects_native_bf16() == expected


def test_auto_bf16_embeds_in_float32_close_to_float32(cpu_with, tmp_path):
    cpu_with(avx512_bf16=True)
    auto = PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, **PREP).fit()
    full = PretrainedFeatureExtractor(tiny_cnn(), precision="float32", **PREP).fit()
    a, f = auto.transform(X), full.transform(X)
    assert a.dtype == np.float32
    assert auto.transform_cost_.precision == "bfloat16"
    assert not np.array_equal(a, f)  # it did compute in bfloat16
    cos = (a * f).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(f, axis=1)
    assert cos.min() > 0.99
    # the cache keys include the compute dtype: float32 results are not served from it
    cached = PretrainedFeatureExtractor(tiny_cnn(), cache=tmp_path, precision="float32",
                                        **PREP).fit()
    np.testing.assert_array_equal(cached.transform(X), f)
    assert cached.transform_cost_.n_images == len(X)


def test_auto_bf16_fine_tunes_under_autocast(cpu_with):
    cpu_with(amx_bf16=True)
    clf = FineTuneClassifier(tiny_cnn(), max_epochs=2, unfreeze=1, random_state=0,
                             **PREP).fit(X, [0, 1] * 3)
    assert clf.net_.amp_dtype == torch.bfloat16
    assert clf.fit_cost_.precision == "bfloat16"
    assert clf.predict_proba(X).dtype == np.float32


@pytest.mark.parametrize("value, answer", [("1", True), ("yes", True), ("0", False),
                                           ("off", False)])
def test_the_environment_overrides_the_cpus_answer(monkeypatch, value, answer):
    """SKTRANSFER_NATIVE_BF16 (pytest --native-bf16) sends "auto" down either path on
    any CPU; what the CPU really has is still reported (benchmarks print it)."""
    monkeypatch.setenv(_runtime.NATIVE_BF16_ENV, value)
    for features in ({}, {"avx512_bf16": True}):
        monkeypatch.setattr(_runtime, "cpu_features", lambda f=features: f)
        assert _runtime.cpu_has_native_bf16() is answer
        assert _runtime.autocast_dtype(CPU, "auto") == (torch.bfloat16 if answer else None)
        assert _runtime.cpu_detects_native_bf16() is bool(features)
        path = _runtime.compute_path(CPU, torch.bfloat16)
        assert path == ("native bf16" if features else "emulated bf16")
    assert _runtime.compute_path(CPU, None) == "float32"


def test_a_bad_override_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(_runtime.NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="SKTRANSFER_NATIVE_BF16='maybe'"):
        _runtime.autocast_dtype(CPU, "auto")
