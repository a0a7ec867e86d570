"""The scikit-learn contract, checked for every public estimator.

``check_estimator`` skips estimators whose input is not a 2-D array, so this module
checks the contract itself on image input, plus the sklearn checks that need no data.
The estimators are the scikit-learn estimators in ``sktransfer.__all__``; each needs an
entry in ``CASES``. Parameters that several estimators take have one default and one
documentation, save for what an estimator declares otherwise.
"""

from __future__ import annotations

import ast
import inspect
import pickle
import re
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from numpydoc.docscrape import NumpyDocString, Parameter
from PIL import Image
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as sk_checks
from torch import nn

import sktransfer
from sktransfer import (
    DomainAdaptationClassifier,
    FineTuneClassifier,
    FineTuneRegressor,
    FineTuneSegmenter,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
)
from sktransfer._base import ImageEstimator
from sktransfer._finetune_base import BaseFineTuner

from ._helpers import TINY_CLIP, tiny_cnn

RNG = np.random.default_rng(0)
X_IMAGES = RNG.integers(0, 256, size=(8, 18, 18, 3), dtype=np.uint8)
Y_LABELS = np.array(["a", "b"] * 4)
Y_VALUES = np.linspace(-1.0, 3.0, 8)
Y_PARTLY = np.array(["a", "b", None, "a", "b", None, "a", "b"], dtype=object)  # 2 targets
Y_MASKS = (X_IMAGES[..., 0] > 127).astype(np.int64)  # one label per pixel


def _extractor():
    return PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16)


def _classifier():
    return FineTuneClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=2,
                              unfreeze=1, random_state=0)


def _regressor():
    return FineTuneRegressor(tiny_cnn(), image_size=16, resize_size=16, max_epochs=2,
                             unfreeze=1, random_state=0)


def _adapter():
    return DomainAdaptationClassifier(tiny_cnn(), image_size=16, resize_size=16,
                                      max_epochs=2, unfreeze=1, random_state=0)


def _segmenter():
    return FineTuneSegmenter(tiny_cnn(), image_size=16, max_epochs=2, unfreeze=1,
                             random_state=0)


def _zero_shot():
    pytest.importorskip("open_clip")  # the sktransfer[clip] extra
    return ZeroShotClassifier(f"open_clip:local-dir:{TINY_CLIP}", templates=["a {}."])


# The public estimators on images, by name: every class of the public API that is a
# scikit-learn estimator taking images, so that a new one is checked here without being
# listed.
ALL_ESTIMATORS = {
    name: obj for name in sorted(sktransfer.__all__)
    if isinstance(obj := getattr(sktransfer, name), type) and issubclass(obj, BaseEstimator)
}
PUBLIC_ESTIMATORS = {name: cls for name, cls in ALL_ESTIMATORS.items()
                     if issubclass(cls, ImageEstimator)}
# Public estimators on embeddings (2-D arrays): scikit-learn's own check_estimator covers
# them, in the test module named here.
ON_EMBEDDINGS = {"NoveltyDetector": "tests/test_novelty.py"}

# How each public estimator is exercised: (factory of a small estimator, its output method,
# targets to fit). test_every_public_estimator_has_a_case fails for one missing here.
CASES = {
    PretrainedFeatureExtractor: (_extractor, "transform", Y_LABELS),
    FineTuneClassifier: (_classifier, "predict_proba", Y_LABELS),
    FineTuneRegressor: (_regressor, "predict", Y_VALUES),
    DomainAdaptationClassifier: (_adapter, "predict_proba", Y_PARTLY),
    FineTuneSegmenter: (_segmenter, "predict_proba", Y_MASKS),
    ZeroShotClassifier: (_zero_shot, "predict_proba", Y_LABELS),
}


# Estimators whose outputs a Dask array cannot hold, and the reason they give.
NOT_ON_DASK = {"FineTuneSegmenter": "each mask has its image's own size"}


def _equal_params(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, nn.Module):
            sa, sb = va.state_dict(), vb.state_dict()
            if type(va) is not type(vb) or sa.keys() != sb.keys():
                return False
            if not all(torch.equal(sa[k], sb[k]) for k in sa):
                return False
        elif va != vb:
            return False
    return True


def test_every_public_estimator_has_a_case():
    """A public estimator without an entry in CASES would go unchecked: none may lack one
    (and CASES holds nothing else)."""
    assert PUBLIC_ESTIMATORS, "no scikit-learn estimator found in sktransfer.__all__"
    unlisted = sorted(set(ALL_ESTIMATORS) - set(PUBLIC_ESTIMATORS) - set(ON_EMBEDDINGS))
    assert unlisted == [], f"estimators on neither images nor ON_EMBEDDINGS: {unlisted}"
    root = Path(__file__).parents[1]
    for name, module in ON_EMBEDDINGS.items():  # where scikit-learn's checks run on it
        text = (root / module).read_text()
        assert f"parametrize_with_checks([{name}(" in text, (name, module)
    missing = sorted(n for n, cls in PUBLIC_ESTIMATORS.items() if cls not in CASES)
    extra = sorted(cls.__name__ for cls in CASES if cls not in PUBLIC_ESTIMATORS.values())
    assert (missing, extra) == ([], []), f"no case for {missing}; not public: {extra}"


@pytest.fixture(params=sorted(PUBLIC_ESTIMATORS))
def case(request):
    cls = PUBLIC_ESTIMATORS[request.param]
    if cls not in CASES:
        pytest.fail(f"{request.param} has no entry in CASES")
    factory, method, y = CASES[cls]
    return request.param, factory, method, y


def test_init_only_stores_parameters(case):
    _, factory, _, _ = case
    est = factory()
    assert set(vars(est)) == set(est.get_params(deep=False))


def test_clone_gives_equal_unfitted_copy(case):
    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    copy = clone(est)
    assert _equal_params(copy.get_params(), est.get_params())
    with pytest.raises(NotFittedError):
        getattr(copy, method)(X_IMAGES)


def test_params_round_trip(case):
    _, factory, _, _ = case
    est = factory()
    params = est.get_params()
    est.set_params(**params)
    assert _equal_params(est.get_params(), params)
    est.set_params(batch_size=3)
    assert est.get_params()["batch_size"] == 3


def test_fit_returns_self_and_unfitted_raises(case):
    _, factory, method, y = case
    est = factory()
    with pytest.raises(NotFittedError):
        getattr(est, method)(X_IMAGES)
    assert est.fit(X_IMAGES, y) is est


def test_pickle_round_trip_gives_identical_output(case):
    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    before = getattr(est, method)(X_IMAGES)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(getattr(loaded, method)(X_IMAGES), before)


def test_export_restore_pair_recreates_the_fitted_estimator(case):
    """Every estimator shares the base and speaks exchange's protocol."""
    from sktransfer._base import ImageEstimator

    _, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    assert isinstance(est, ImageEstimator)
    assert set(ImageEstimator._parameter_constraints) <= set(est._parameter_constraints)
    module, prep, groups, fitted = est.__sktransfer_export__()
    fresh = clone(est)
    backbone = fresh.__sktransfer_architecture__(prep, groups)  # the architecture, no weights
    restored = fresh.__sktransfer_restore__(backbone, module.state_dict(), fitted)
    assert restored is fresh
    np.testing.assert_allclose(getattr(restored, method)(X_IMAGES),
                               getattr(est, method)(X_IMAGES), rtol=1e-5, atol=1e-6)


# What each estimator's ONNX graph returns in place of ``method`` (see sktransfer.deploy).
ONNX_OUTPUT = {"transform": "embeddings", "predict_proba": "probabilities",
               "predict": "predictions"}


def test_every_estimator_deploys_as_one_onnx_graph_that_agrees(case, tmp_path):
    """export_onnx writes every public estimator as one graph from uint8 pixels, whose
    output matches the estimator's own (float32) within 1e-4; the estimator predicts as
    before."""
    ort = pytest.importorskip("onnxruntime")  # the sktransfer[onnx] extra
    from sktransfer import export_onnx

    _, factory, method, y = case
    est = factory().set_params(precision="float32").fit(X_IMAGES, y)
    before = getattr(est, method)(X_IMAGES)
    path = export_onnx(est, tmp_path / "model.onnx")
    np.testing.assert_array_equal(getattr(est, method)(X_IMAGES), before)  # not mutated
    side = est.__sktransfer_deploy__().preprocessing.crop_size
    X = X_IMAGES[:, 1:1 + side, 1:1 + side] if side <= 16 else np.stack(
        [np.asarray(Image.fromarray(x).resize((side, side))) for x in X_IMAGES])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"images": np.ascontiguousarray(X)}), strict=True))
    np.testing.assert_allclose(outputs[ONNX_OUTPUT[method]], getattr(est, method)(X),
                               atol=1e-4, rtol=1e-4)
    if "label" in outputs or "mask" in outputs:
        name = "label" if "label" in outputs else "mask"
        np.testing.assert_array_equal(outputs[name], est.predict(X))


def test_tags_are_honest_about_image_input(case):
    _, factory, _, _ = case
    tags = factory().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    assert tags.input_tags.string is True
    assert tags.requires_fit is True


@pytest.mark.parametrize(
    "check",
    [
        sk_checks.check_no_attributes_set_in_init,
        sk_checks.check_parameters_default_constructible,
        sk_checks.check_get_params_invariance,
        sk_checks.check_set_params,
        sk_checks.check_do_not_raise_errors_in_init_or_set_params,
        sk_checks.check_estimator_cloneable,
        sk_checks.check_estimator_repr,
        sk_checks.check_mixin_order,
        sk_checks.check_estimator_tags_renamed,
        sk_checks.check_param_validation,
    ],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("name", sorted(PUBLIC_ESTIMATORS))
def test_sklearn_checks_that_apply(name, check):
    check(name, PUBLIC_ESTIMATORS[name]())


def test_dask_collections_give_the_in_memory_output(case):
    """Each output method takes a dask array lazily, with the declared dtype and width
    (Dask's synchronous scheduler here; tests/test_dask.py runs a real cluster)."""
    import dask
    import dask.array as da

    name, factory, method, y = case
    est = factory().fit(X_IMAGES, y)
    if name in NOT_ON_DASK:  # refused, with the reason, rather than computed wrongly
        with pytest.raises(TypeError, match=NOT_ON_DASK[name]):
            getattr(est, method)(da.from_array(X_IMAGES, chunks=3))
        return
    methods = [method, "predict"] if hasattr(est, "predict") else [method]
    for name in dict.fromkeys(methods):
        expected = getattr(est, name)(X_IMAGES)
        lazy = getattr(est, name)(da.from_array(X_IMAGES, chunks=3))
        assert isinstance(lazy, da.Array)
        assert lazy.dtype == expected.dtype and lazy.shape == expected.shape, name
        with dask.config.set(scheduler="sync"):
            computed = lazy.compute()
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(computed, expected)


# ------------------------------------------------------------------ shared parameters
def _init_defaults(cls: type) -> dict[str, object]:
    """The parameters of ``cls.__init__`` with their defaults."""
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self"}


# Parameters that two or more public estimators take.
SHARED = sorted(name for name, count in Counter(
    name for cls in PUBLIC_ESTIMATORS.values() for name in _init_defaults(cls)).items()
    if count >= 2)


def _entries(docstring: str) -> dict[str, Parameter]:
    """The numpydoc Parameters entries of ``docstring``, by parameter name (an entry naming
    several, ``image_size, resize_size, mean, std : optional``, under each name)."""
    entries = NumpyDocString(docstring)["Parameters"]
    return {name: entry._replace(desc=tuple(entry.desc))
            for entry in entries for name in entry.name.split(", ")}


def _class_entries(cls: type) -> dict[str, Parameter]:
    return _entries(inspect.getdoc(cls))


def _declared(cls: type) -> dict[str, Parameter]:
    """The entries ``cls`` declares as its own: the ``parameters`` it gave the
    ``@fill_docstring`` decorator that writes its docstring (as ``_adaptation``'s
    ``_PARAMETERS``), which records them on the class. Empty for none."""
    declared = vars(cls).get("_declared_parameter_docs", {})
    header = "Parameters\n----------\n"
    return {name: entry for text in declared.values()
            for name, entry in _entries(header + textwrap.dedent("    " + text)).items()}


_NO_DEFAULT = object()


def _documented_default(entry: Parameter) -> object:
    """The value of the entry's ``default=...``; _NO_DEFAULT when it states none."""
    match = re.search(r"\bdefault=(.+)$", entry.type)
    return _NO_DEFAULT if match is None else ast.literal_eval(match.group(1))


def test_shared_parameters_have_the_same_default():
    """A parameter several estimators take has one default in all of them, unless an
    estimator declares its own entry for it to ``fill_docstring`` (as
    DomainAdaptationClassifier's ``_PARAMETERS`` does); and every estimator's docstring
    states the default its ``__init__`` has, the declared entries included."""
    problems = []
    for param in SHARED:
        undeclared = {}
        for name, cls in PUBLIC_ESTIMATORS.items():
            defaults = _init_defaults(cls)
            if param not in defaults:
                continue
            default = defaults[param]
            entry = _class_entries(cls).get(param)
            if entry is None:
                problems.append(f"{name} does not document {param}")
            elif (documented := _documented_default(entry)) is not _NO_DEFAULT and (
                    repr(documented) != repr(default)):
                problems.append(f"{name}: {param} defaults to {default!r} but its docstring "
                                f"says {documented!r}")
            declared = _declared(cls).get(param)
            if declared is None:
                undeclared[name] = default
            elif (stated := _documented_default(declared)) is not _NO_DEFAULT and (
                    repr(stated) != repr(default)):
                problems.append(f"{name}: {param} defaults to {default!r} but the entry it "
                                f"declares says {declared.type!r}")
        if len({repr(default) for default in undeclared.values()}) > 1:
            problems.append(f"{param} has different defaults, none declared: {undeclared}")
    assert problems == [], "\n".join(problems)


def _refers_to(entry: Parameter, others: dict[str, Parameter]) -> str | None:
    """The estimator among ``others`` whose entry ``entry`` defers to ("As for
    :class:`FineTuneClassifier`...", with the same type and default), if any."""
    match = re.match(r"As for :class:`~?(?:sktransfer\.)?(\w+)`", " ".join(entry.desc))
    if match and match.group(1) in others and others[match.group(1)].type == entry.type:
        return match.group(1)
    return None


def test_shared_parameters_have_the_same_doc():
    """A parameter several fine-tuning estimators take has the same numpydoc entry (type,
    default and description) in each, except where an estimator declares its own to
    ``fill_docstring`` (then its docstring holds exactly that entry) or its entry defers
    to another estimator's ("As for :class:`FineTuneClassifier`", same type line).

    Only the estimators built on BaseFineTuner, whose shared entries ``fill_docstring``
    writes, are compared: PretrainedFeatureExtractor documents its parameters itself,
    and some take other values there (``precision="float16"``, a ``torch.device``);
    test_shared_parameters_have_the_same_default checks its defaults with the others'.
    """
    fine_tuners = {n: cls for n, cls in PUBLIC_ESTIMATORS.items()
                   if issubclass(cls, BaseFineTuner)}
    problems = []
    for param in SHARED:
        entries = {name: _class_entries(cls).get(param) for name, cls in fine_tuners.items()
                   if param in _init_defaults(cls)}
        if len(entries) < 2:
            continue
        undeclared = {}
        for name, entry in entries.items():
            declared = _declared(fine_tuners[name]).get(param)
            if entry is None:
                problems.append(f"{name} does not document {param}")
            elif declared is not None:
                if entry != declared:
                    problems.append(f"{name}: the {param} entry is not the one it declares")
            elif _refers_to(entry, {n: e for n, e in entries.items() if e and n != name}):
                continue
            else:
                undeclared[name] = entry
        if len(set(undeclared.values())) > 1:
            by_entry = {}
            for name, entry in undeclared.items():
                by_entry.setdefault(entry, []).append(name)
            problems.append(f"{param} is documented differently, none declared: "
                            + "; ".join(f"{names}: {entry.type}: {' '.join(entry.desc)[:80]}"
                                        for entry, names in by_entry.items()))
    assert problems == [], "\n".join(problems)
