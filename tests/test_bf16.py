"""The bfloat16 path: what ``precision="bfloat16"`` (and ``"auto"`` where bf16 is native)
computes, on any CPU.

Emulated bf16 rounds each value as native bf16 does (kernels may sum in another order),
only slower, so these tests run on every CPU, and ``pytest --native-bf16=yes|no`` makes
``"auto"`` take either path. Tolerances come from bf16's 8-bit significand: rounding a
value to bf16 moves it by at most ``U = 2**-8`` of its magnitude, so a result whose path
went through ``k`` roundings is within about ``k * U`` of the float32 result, relative to
the magnitude of what was rounded (the scale). Each test names its ``k`` and its scale;
each also checks that bf16 did run (the result is not float32's), so a path that silently
stayed float32 fails too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor, _runtime

from ._helpers import tiny_cnn

pytestmark = pytest.mark.precision

U = 2.0 ** -8  # bf16's unit roundoff: 8 significant bits, round to nearest
PREP = {"image_size": 16, "resize_size": 16}
RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)  # at crop size: no resize
Y = np.array(["cat", "dog", "emu"] * 8)
X[Y == "cat"] //= 3  # learnable: darker
X[Y == "emu", :, :8] = 255


def bound(k: int, scale: float) -> float:
    """The largest error ``k`` bf16 roundings of quantities of size ``scale`` can cause."""
    return k * U * float(scale)


def assert_same_predictions(p_a: np.ndarray, p_b: np.ndarray, tolerance: float) -> None:
    """Probabilities within ``tolerance`` but not equal (the two paths did differ), and
    the same labels wherever ``p_b``'s top two are further apart than twice it (all but a
    few rows here: the models are confident)."""
    assert 0 < np.abs(p_a - p_b).max() <= tolerance
    top2 = np.sort(p_b, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tolerance
    assert clear.mean() > 0.9
    assert np.array_equal(p_a.argmax(1)[clear], p_b.argmax(1)[clear])


def extractor(precision: str, **params) -> PretrainedFeatureExtractor:
    return PretrainedFeatureExtractor(tiny_cnn(), precision=precision, **PREP, **params)


def classifier(precision: str, **params) -> FineTuneClassifier:
    defaults = dict(max_epochs=3, random_state=0, lr=1e-2, batch_size=8, unfreeze="all",
                    freeze_epochs=0)
    return FineTuneClassifier(tiny_cnn(), precision=precision, **PREP,
                              **{**defaults, **params})


def by_hand(dtype: torch.dtype | None) -> np.ndarray:
    """tiny_cnn without its head on X, under autocast to ``dtype`` (None: float32)."""
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad(), _runtime.autocast(torch.device("cpu"), dtype):
        return tiny_cnn().eval()[:-1]((x - mean) / std).float().numpy()


# ------------------------------------------------------------------ embeddings
def test_embeddings_in_bf16_are_float32_within_the_roundings_of_their_path():
    ext = extractor("bfloat16").fit()
    out = ext.transform(X)
    full = by_hand(None)
    assert out.dtype == np.float32  # the output is float32 whatever the compute dtype
    assert ext.precision_ == ext.transform_cost_.precision == "bfloat16"
    # conv (input, weights, output), BatchNorm, conv (3), BatchNorm, pooling: k = 9
    err = np.abs(out - full).max()
    assert 0 < err <= bound(9, np.abs(full).max())
    # and it is bf16 arithmetic as torch's autocast does it, up to summation order
    np.testing.assert_allclose(out, by_hand(torch.bfloat16), rtol=0,
                               atol=bound(2, np.abs(full).max()))


def test_the_cache_keeps_bf16_and_float32_embeddings_apart(tmp_path):
    half = extractor("bfloat16", cache=tmp_path).fit().transform(X)
    full = extractor("float32", cache=tmp_path).fit()
    got = full.transform(X)
    assert full.transform_cost_.n_images == len(X)  # embedded, not served from bf16 entries
    assert not np.array_equal(got, half)
    again = extractor("bfloat16", cache=tmp_path).fit()
    np.testing.assert_array_equal(again.transform(X), half)
    assert again.transform_cost_.n_images == 0  # its own dtype's entries: served


# ------------------------------------------------------------------ fine-tuning
def test_bf16_training_keeps_float32_master_weights():
    """Updates far below bf16's resolution of a weight still land: the weights the
    optimizer updates are float32, only the forward and backward passes are bf16."""
    init = tiny_cnn().state_dict()
    lr = 1e-6  # every step moves a weight by ~lr, < U * |weight| for all but tiny weights
    clf = classifier("bfloat16", optimizer="sgd", lr=lr, schedule="constant",
                     max_epochs=1).fit(X, Y)
    assert clf.precision_ == clf.fit_cost_.precision == "bfloat16"
    assert clf.net_.amp_dtype == torch.bfloat16
    state = {k.removeprefix("body.net."): v for k, v in clf.net_.module_.state_dict().items()}
    weight = state["0.weight"]
    assert weight.dtype == torch.float32
    moved = (weight - init["0.weight"]).abs()
    small = moved < U / 2 * init["0.weight"].abs()  # steps a bf16 weight could not take
    assert (small & (moved > 0)).any()


def test_bf16_fine_tuning_predicts_as_float32_fine_tuning_within_its_roundings():
    half = classifier("bfloat16", max_epochs=8, lr=0.05).fit(X, Y)
    full = classifier("float32", max_epochs=8, lr=0.05).fit(X, Y)
    p_half, p_full = half.predict_proba(X), full.predict_proba(X)
    assert p_half.dtype == np.float32
    # the bound of one bf16 forward pass: conv (3 roundings), BatchNorm, conv (3),
    # BatchNorm, pooling, head (2) give k = 11 on O(1) logits, and softmax moves a
    # probability by at most half a logit's change (scale 0.5): 0.021. For the training
    # part it is empirical (AdamW normalises its steps, so no rounding bound covers a
    # trajectory in general): measured 1.3e-3 here, 16x inside it.
    assert_same_predictions(p_half, p_full, bound(11, 0.5))


# ------------------------------------------------------------------ BatchNorm
def test_bf16_recalibration_gives_the_statistics_of_the_bf16_activations():
    clf = classifier("bfloat16", unfreeze=1, batchnorm="recalibrate").fit(X, Y)
    module, body = clf.net_.module_, clf.net_.module_.body.net
    x = clf.preprocessing_.normalize(torch.from_numpy(X).permute(0, 3, 1, 2).contiguous())
    module.eval()
    seen = {}  # what BatchNorm 4 sees, under bf16 autocast and in float32
    with torch.no_grad():
        for dtype in (torch.bfloat16, None):
            with _runtime.autocast(torch.device("cpu"), dtype):
                seen[dtype is not None] = body[:4](x).float()

    def stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = a.split(8)  # recalibration averages the statistics of its batches
        return (torch.stack([p.mean(dim=(0, 2, 3)) for p in parts]).mean(0),
                torch.stack([p.var(dim=(0, 2, 3)) for p in parts]).mean(0))

    (mean16, var16), (mean32, var32) = stats(seen[True]), stats(seen[False])
    a16 = seen[True]
    # against bf16 activations computed by hand: summation order only, k = 2
    torch.testing.assert_close(body[4].running_mean, mean16, rtol=0,
                               atol=bound(2, a16.abs().mean()))
    torch.testing.assert_close(body[4].running_var, var16, rtol=0,
                               atol=bound(4, (a16 ** 2).mean()))
    # against float32 ones: conv, BatchNorm, conv on the way, k = 7 (14 for squares)
    mean_err = (body[4].running_mean - mean32).abs().max()
    var_err = (body[4].running_var - var32).abs().max()
    assert 0 < mean_err <= bound(7, a16.abs().mean())
    assert var_err <= bound(14, (a16 ** 2).mean())


# ------------------------------------------------------------------ compiled network
def test_compiled_bf16_network_embeds_as_the_eager_one_within_its_roundings():
    eager = extractor("bfloat16").fit().transform(X)
    compiled = extractor("bfloat16", compile=True).fit()
    got = compiled.transform(X)
    assert compiled.transform_cost_.precision == "bfloat16"
    # both are within 9 roundings of float32 (see the embeddings test): k = 18
    scale = np.abs(eager).max()
    np.testing.assert_allclose(got, eager, rtol=0, atol=bound(18, scale))
    # and it did round to bf16: float32 compiled code is ~1e-6 from float32, bf16's
    # roundings put it ~U * scale away
    assert np.abs(got - by_hand(None)).max() > U / 16 * scale


def test_the_prediction_dtype_is_the_calling_threads_only():
    """Prediction computes in the dtype ``precision`` means where it runs without
    changing the fitted net: another thread predicting meanwhile keeps its own."""
    import threading

    net = classifier("bfloat16", max_epochs=1).fit(X, Y).net_
    seen = {}
    with net.computing_in(None):
        other = threading.Thread(target=lambda: seen.setdefault("other", net.compute_dtype()))
        other.start()
        other.join()
        seen["here"] = net.compute_dtype()
    assert seen == {"other": torch.bfloat16, "here": None}
    assert net.amp_dtype == net.compute_dtype() == torch.bfloat16


# ------------------------------------------------------------------ across machines
@pytest.mark.parametrize("fit_on, predict_on", [("1", "0"), ("0", "1")],
                         ids=["fit-bf16-predict-float32", "fit-float32-predict-bf16"])
def test_a_model_fitted_on_one_kind_of_cpu_predicts_on_the_other(monkeypatch, fit_on,
                                                                 predict_on):
    """precision="auto" on a CPU with native bf16 (1) and without (0), forced through
    SKTRANSFER_NATIVE_BF16: prediction resolves ``auto`` on the machine it runs on."""
    monkeypatch.setenv(_runtime.NATIVE_BF16_ENV, fit_on)
    clf = classifier("auto", max_epochs=8, lr=0.05).fit(X, Y)
    ext = extractor("auto").fit()
    fitted_in = "bfloat16" if fit_on == "1" else "float32"
    assert clf.precision_ == ext.precision_ == clf.fit_cost_.precision == fitted_in
    proba_there, emb_there = clf.predict_proba(X), ext.transform(X)
    monkeypatch.setenv(_runtime.NATIVE_BF16_ENV, predict_on)
    proba_here, emb_here = clf.predict_proba(X), ext.transform(X)
    assert ext.transform_cost_.precision == ("bfloat16" if predict_on == "1" else "float32")
    assert clf.precision_ == fitted_in  # what training used, unchanged
    # the documented tolerance: probabilities within one bf16 forward pass (k = 11 on
    # O(1) logits, halved by softmax), the same labels wherever the top two are further
    # apart than twice that; embeddings within 9 roundings (see above)
    assert_same_predictions(proba_here, proba_there, bound(11, 0.5))
    assert 0 < np.abs(emb_here - emb_there).max() <= bound(9, np.abs(emb_there).max())
