"""Deployment to any app: a fitted estimator or pipeline as one ONNX graph, from the pixels
of decoded images to probabilities, labels, predictions, embeddings or masks.

The graph runs wherever ONNX Runtime does (C#, Java, JavaScript, C++, mobile, edge
devices, serving stacks) with no Python, torch or scikit-learn. Every export keeps one
contract, written in the graph's metadata as well (:func:`read_onnx_metadata`):

- input ``images``: uint8, ``(N, H, W, 3)``, RGB, as image decoders return them. By
  default ``H = W = crop`` (the estimator's ``image_size``): the app resizes the shorter
  side to the estimator's ``resize_size`` and takes the centre ``crop`` x ``crop``
  (segmentation: resizes to ``crop`` x ``crop``). With ``resize=True`` the graph does
  that itself and takes images of any size. Normalisation is inside the graph either way.
- outputs: ``label`` (the fitted labels: int64 or strings; a 0/1 int64 matrix for
  multi-label) and ``probabilities`` ``(N, n_classes)`` for classifiers; ``predictions``
  for regressors (``(N,)`` for a 1-D ``y``); ``embeddings`` for a feature extractor
  alone (or followed by transformers only); ``mask`` ``(N, H, W)`` int64 and
  ``probabilities`` ``(N, H, W, n_classes)`` for the segmenter.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._deployable import Deployable
from ._onnx_contract import describe, read_onnx_metadata, require
from ._onnx_runtime import OnnxModel

DEFAULT_OPSET = 18  # Resize with antialiasing; the dynamo exporter's own opset


def export_onnx(estimator: object, path: str | os.PathLike, *, opset: int | None = None,
                quantize: str | None = None, calibration: object = None,
                resize: bool = False) -> Path:
    """Write a fitted estimator or pipeline as one ONNX graph, pixels to outputs.

    Parameters
    ----------
    estimator : estimator, Pipeline or search
        Fitted: a :class:`~sktransfer.PretrainedFeatureExtractor` (alone, or the first
        step of a :class:`~sklearn.pipeline.Pipeline` whose other steps skl2onnx
        converts), a :class:`~sktransfer.ZeroShotClassifier`, any fine-tuning estimator
        (:class:`~sktransfer.FineTuneClassifier`, multi-label included,
        :class:`~sktransfer.FineTuneRegressor`, :class:`~sktransfer.FineTuneSegmenter`,
        :class:`~sktransfer.DomainAdaptationClassifier`), or a fitted search
        (``GridSearchCV``...) of one of these, whose ``best_estimator_`` is exported.
    path : path
        The ``.onnx`` file to write (atomically).
    opset : int, default=None
        ONNX opset of the graph, 18 or more; ``None`` means 18 (IR version 8:
        onnxruntime 1.14 and later run it).
    quantize : {"int8"}, default=None
        Quantise the network's convolutions and matrix products to int8 with
        onnxruntime's quantisation: static (activation ranges calibrated on
        ``calibration``) when calibration images are given, else dynamic (weights only;
        refused for convolutional networks, where onnxruntime's dynamic int8 runs slower
        than float32). The scikit-learn steps stay float32.
    calibration : images, default=None
        Images (anything the estimators take) whose activations set the int8 ranges of
        static quantisation; a few hundred from the training set are typical.
    resize : bool, default=False
        Put the resize and centre crop inside the graph, so that it takes decoded
        images of any size (one size per call); every pixel within one grey level of
        the library's own resizing (bicubic weights: all but 0.02 %; see the Deploying
        guide).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        For estimators that cannot be exported, naming them (a pipeline step without
        a skl2onnx converter, a pipeline not starting with a feature extractor).
    ValueError
        For invalid options, and for what cannot be quantised, with the reason.
    """
    require("onnx", "onnxruntime", "onnxscript")
    from ._onnx_network import export_network
    from ._onnx_parts import (
        finish,
        join,
        label_graph,
        rename_output,
        resize_graph,
        segmentation_graph,
    )
    from ._onnx_quantize import check_quantize, quantize_network
    from .io import atomic_dump

    opset = _check_opset(opset)
    check_quantize(quantize, calibration)
    resize = _check_bool(resize, "resize")
    estimator = best_estimator(estimator)
    deployable, rest, name = _deployable_of(estimator)
    if rest:
        require("skl2onnx")
        from ._onnx_sklearn import check_final_step, convert_steps, task_of

        check_final_step(*rest[-1])
    outputs, classes = _outputs(deployable, rest)  # refuses unusable labels before exporting
    prep = deployable.preprocessing
    network = export_network(deployable, opset, name)
    if quantize is not None:
        network = quantize_network(network, deployable, calibration)
    task = deployable.task
    if rest:
        head, outputs = convert_steps(rest, _n_features(network), opset)
        rename_output(network, "embeddings", "network_embeddings")  # the head's may be too
        graph = join(network, head, [("network_embeddings", "features")], "head/", outputs)
        task = task_of(rest[-1][1])
    elif task in ("classifier", "multilabel"):
        graph = join(network, label_graph(classes, task == "multilabel", opset),
                     [("probabilities", "probabilities")], "label/", outputs)
    else:
        graph = network
    if resize:
        graph = join(resize_graph(prep, task == "segmenter", opset), graph,
                     [("resized", "images")], "net/")
    if task == "segmenter":
        io_map = [("scores", "scores")] + ([("image_size", "image_size")] if resize else [])
        graph = join(graph, segmentation_graph(len(classes), prep.crop_size, resize, opset),
                     io_map, "finish/")
    _check_outputs(graph, outputs)
    finish(graph)
    describe(graph, estimator, deployable, task, classes, outputs, resize, quantize,
             calibration)
    import onnx

    try:
        onnx.checker.check_model(graph, full_check=True)
    except Exception as exc:  # a graph this function built wrong: not the user's doing
        raise RuntimeError(f"the ONNX graph of this {name} failed onnx's checker: {exc}; "
                           "please report it") from exc
    return atomic_dump(graph, path, dump=lambda m, p: onnx.save_model(m, p))


def best_estimator(estimator: object) -> object:
    """The estimator a fitted search chose (``best_estimator_``), else ``estimator``."""
    from sklearn.exceptions import NotFittedError

    if hasattr(estimator, "best_estimator_"):
        return best_estimator(estimator.best_estimator_)
    if hasattr(estimator, "cv_results_"):
        raise ValueError(f"this {type(estimator).__name__} was fitted with refit=False, so "
                         "it holds no best estimator to export")
    if all(hasattr(estimator, a) for a in ("estimator", "refit", "scoring", "cv")):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call "
                             "fit before exporting its best estimator")
    return estimator


def _deployable_of(estimator: object) -> tuple[Deployable, list, str]:
    """The deployable network, the scikit-learn steps after it, and a name for errors."""
    from sklearn.pipeline import Pipeline

    from ._extractor import PretrainedFeatureExtractor

    if isinstance(estimator, Pipeline):
        steps = [(n, s) for n, s in estimator.steps]
        first_name, first = steps[0]
        if not isinstance(first, PretrainedFeatureExtractor):
            raise TypeError(
                f"the pipeline's first step {first_name!r} ({type(first).__name__}) is not "
                "a PretrainedFeatureExtractor: export_onnx exports pipelines from images "
                "to outputs, whose first step turns images into embeddings")
        for name, step in steps[1:]:
            if hasattr(step, "__sktransfer_deploy__"):
                raise TypeError(f"pipeline step {name!r} ({type(step).__name__}) is an "
                                "sktransfer estimator after the first step; only the "
                                "first step may take images")
        rest = [(n, s) for n, s in steps[1:] if s is not None and s != "passthrough"]
        # the extractor's own computation, also for a ZeroShotClassifier used as one
        deployable = PretrainedFeatureExtractor.__sktransfer_deploy__(first)
        return deployable, rest, "Pipeline"
    if not hasattr(estimator, "__sktransfer_deploy__"):
        raise TypeError(
            f"export_onnx takes a fitted sktransfer estimator, a Pipeline starting with a "
            f"PretrainedFeatureExtractor, or a fitted search of one; got "
            f"{type(estimator).__name__}")
    return estimator.__sktransfer_deploy__(), [], type(estimator).__name__


def _outputs(deployable: Deployable, rest: list) -> tuple[list[str], np.ndarray | None]:
    task = deployable.task
    classes = deployable.classes
    if rest:
        from ._onnx_parts import label_values

        final = rest[-1][1]
        if not hasattr(final, "classes_"):
            return [], None
        classes = np.asarray(final.classes_)
        label_values(classes)  # int64 or strings, as for the estimators' own labels
        return [], classes
    if task == "classifier":
        from ._onnx_parts import label_values

        label_values(classes)
    return {"transform": ["embeddings"], "classifier": ["label", "probabilities"],
            "multilabel": ["label", "probabilities"], "regressor": ["predictions"],
            "segmenter": ["mask", "probabilities"]}[task], classes


def _n_features(network) -> int:
    dim = network.graph.output[0].type.tensor_type.shape.dim[1]
    return int(dim.dim_value)


def _check_outputs(graph, outputs: list[str]) -> None:
    names = [o.name for o in graph.graph.output]
    if names != outputs:  # the contract's outputs, in its order, and nothing else
        raise RuntimeError(f"internal error: graph outputs {names}, expected {outputs}")


def _check_opset(opset: object) -> int:
    import onnx

    if opset is None:
        return DEFAULT_OPSET
    highest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not (
            DEFAULT_OPSET <= int(opset) <= highest):
        raise ValueError(f"opset must be an int from {DEFAULT_OPSET} (the exporter's lowest; "
                         f"antialiased Resize) to {highest} (this onnx's highest), got "
                         f"{opset!r}")
    return int(opset)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


__all__ = ["OnnxModel", "export_onnx", "read_onnx_metadata"]
