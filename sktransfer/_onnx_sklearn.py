"""The scikit-learn steps of a pipeline after its feature extractor, as one ONNX graph
(skl2onnx) from ``embeddings`` to the contract's outputs."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper
from sklearn.base import is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from ._onnx_parts import ML_DOMAIN, ML_OPSET, rename_output


def check_convertible(steps: list[tuple[str, object]]) -> None:
    """Refuse, naming it, the first step skl2onnx has no converter for."""
    from skl2onnx._supported_operators import sklearn_operator_name_map

    for name, step in steps:
        if step is None or step == "passthrough":
            continue
        if type(step) not in sklearn_operator_name_map:
            raise TypeError(
                f"pipeline step {name!r} ({type(step).__name__}) has no ONNX converter in "
                "skl2onnx, so the pipeline cannot become one ONNX graph; replace the step "
                "with one skl2onnx converts (StandardScaler, PCA, LogisticRegression, SVC, "
                "RandomForestClassifier, KNeighborsClassifier...) or register a converter "
                "with skl2onnx.update_registered_converter")


def _failing_step(steps: list[tuple[str, object]], convert) -> tuple[str, object]:
    """The first step whose pipeline prefix skl2onnx cannot convert (the last if all can)."""
    for i in range(1, len(steps)):
        try:
            convert(Pipeline(steps[:i]) if i > 1 else steps[0][1])
        except Exception:
            return steps[i - 1]
    return steps[-1]


def check_final_step(name: str, final: object) -> None:
    """Refuse, naming it, a last step the contract has no outputs for: one predicting
    several outputs (multi-label, multi-output) or clusters."""
    from sklearn.base import is_clusterer

    if is_clusterer(final) or not (is_classifier(final) or is_regressor(final)
                                   or hasattr(final, "transform")):
        raise TypeError(
            f"pipeline step {name!r} ({type(final).__name__}) is neither a classifier, a "
            "regressor nor a transformer; export_onnx writes labels and probabilities, "
            "predictions or embeddings")
    classes = getattr(final, "classes_", None)
    if is_classifier(final) and (isinstance(classes, list) or np.ndim(classes) != 1):
        raise TypeError(
            f"pipeline step {name!r} ({type(final).__name__}) predicts several outputs "
            "(multi-label or multi-output), which export_onnx writes only for "
            "FineTuneClassifier: fit a FineTuneClassifier on the label matrix, or export "
            "one pipeline per label")


def task_of(final: object) -> str:
    """What the last step makes: ``"classifier"``, ``"regressor"`` or ``"transform"``."""
    if is_classifier(final):
        return "classifier"
    if is_regressor(final):
        return "regressor"
    return "transform"


def convert_steps(steps: list[tuple[str, object]], n_features: int,
                  opset: int) -> tuple[onnx.ModelProto, list[str]]:
    """The fitted ``steps`` as one graph from ``embeddings`` ``(N, n_features)`` float32.

    Outputs are renamed to the contract's: ``label`` and ``probabilities`` (``scores``
    where the final classifier has no ``predict_proba``: skl2onnx then writes its
    decision scores) for a classifier, ``predictions`` for a regressor (``(N,)`` where
    its ``predict`` is 1-D), ``embeddings`` for transformers only.

    Returns
    -------
    model : onnx.ModelProto
    outputs : list of str
        Its output names.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    check_convertible(steps)
    final = steps[-1][1]
    pipe = Pipeline(steps) if len(steps) > 1 else final
    task = task_of(final)
    options = {id(final): {"zipmap": False}} if task == "classifier" else None
    def convert(model, options=None):
        with warnings.catch_warnings():  # skl2onnx reads attributes scikit-learn deprecates
            warnings.simplefilter("ignore", FutureWarning)
            return convert_sklearn(
                model, initial_types=[("features", FloatTensorType([None, n_features]))],
                target_opset={"": opset, ML_DOMAIN: ML_OPSET}, options=options)

    try:
        m = convert(pipe, options)
    except Exception as exc:  # skl2onnx's converters raise many types
        name, step = _failing_step(steps, convert)
        raise TypeError(
            f"pipeline step {name!r} ({type(step).__name__}) cannot be converted to ONNX by "
            f"skl2onnx ({type(exc).__name__}: {exc})") from exc
    names = [o.name for o in m.graph.output]
    if task == "classifier":
        scored = "probabilities" if hasattr(final, "predict_proba") else "scores"
        rename_output(m, names[0], "label")
        rename_output(m, names[1], scored)
        return m, ["label", scored]
    if task == "regressor":
        produced = names[0]
        if _predicts_1d(final):  # a 1-D y gives (N,) predictions, as the pipeline's predict
            produced = _flatten(m, produced)
        rename_output(m, produced, "predictions")
        return m, ["predictions"]
    rename_output(m, names[0], "embeddings")
    return m, ["embeddings"]


def _predicts_1d(final: object) -> bool:
    """Whether a fitted regressor's ``predict`` is 1-D (it was fitted on a 1-D ``y``)."""
    n_features = getattr(final, "n_features_in_", None)
    if n_features is None:
        return False
    return np.ndim(final.predict(np.zeros((1, n_features), dtype=np.float32))) == 1


def _flatten(m: onnx.ModelProto, name: str) -> str:
    """Append a node reshaping the output ``name`` ``(N, 1)`` to ``(N,)``; its new name."""
    shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape")
    m.graph.initializer.append(shape)
    m.graph.node.append(helper.make_node("Reshape", [name, "flat_shape"], ["flat"]))
    for out in m.graph.output:
        if out.name == name:
            out.CopyFrom(helper.make_tensor_value_info("flat", out.type.tensor_type.elem_type,
                                                       ["N"]))
    return "flat"


__all__: list[str] = []
