"""The contract an exported ONNX graph carries in its metadata: written at export,
read by apps and by :class:`~sktransfer.OnnxModel`."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from . import __version__

if TYPE_CHECKING:
    from ._deployable import Deployable

_META_PREFIX = "sktransfer."


def require(*modules: str) -> None:
    """Refuse clearly where the ``onnx`` extra is missing."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: "
                          "pip install 'sktransfer[onnx]'")


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The contract an exported graph carries: what it takes and what it returns.

    Parameters
    ----------
    path : path
        A file written by :func:`~sktransfer.export_onnx`.

    Returns
    -------
    dict
        ``sktransfer_version``, ``estimator``, ``task``, ``backbone``, ``weights``,
        ``preprocessing`` (``resize_size``, ``crop_size``, ``mean``, ``std``,
        ``interpolation``, ``in_graph``), ``input`` (dtype, layout, channels, size),
        ``classes`` (or None), ``outputs`` and ``quantization`` (or None).

    Raises
    ------
    ValueError
        If the file is not an ONNX model written by :func:`export_onnx`.
    """
    require("onnx")
    import onnx

    try:
        m = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf's decode errors vary
        raise ValueError(f"{path} is not an ONNX model: {exc}") from None
    props = {p.key[len(_META_PREFIX):]: p.value for p in m.metadata_props
             if p.key.startswith(_META_PREFIX)}
    if "contract" not in props:
        raise ValueError(f"{path} is an ONNX model but not an sktransfer export "
                         "(no sktransfer.contract metadata)")
    return json.loads(props["contract"])


def describe(graph, estimator, deployable: Deployable, task: str, classes, outputs,
              resize: bool, quantize, calibration) -> None:
    """Write the contract into the graph's metadata and doc string."""
    from .exchange import _json_param

    extractor = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    prep = deployable.preprocessing
    model = getattr(extractor, "model", None)
    square = task == "segmenter"
    contract = {
        "sktransfer_version": __version__,
        "estimator": _estimator_name(estimator),
        "task": task,
        "backbone": _json_param("model", model),
        "weights": _json_param("weights", getattr(extractor, "weights", None)),
        "preprocessing": {
            "resize_size": None if square else prep.resize_size, "crop_size": prep.crop_size,
            "mean": list(prep.mean), "std": list(prep.std),
            # a segmenter resizes its images bilinear, whatever the weights say
            "interpolation": "bilinear" if square else prep.interpolation.value,
            "in_graph": bool(resize),
            "resize": ("to crop_size x crop_size" if square else
                       "shorter side to resize_size, then the centre crop_size square"),
        },
        "input": {"name": "images", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                  "size": None if resize else [prep.crop_size, prep.crop_size]},
        "classes": None if classes is None else [_plain(c) for c in classes],
        "outputs": outputs,
        "quantization": None if quantize is None else (
            f"{quantize} {'static' if calibration is not None else 'dynamic'}"),
    }
    graph.producer_name = "sktransfer"
    graph.producer_version = __version__
    graph.doc_string = (
        f"{contract['estimator']} exported by sktransfer {__version__}: uint8 RGB images "
        f"(N, H, W, 3){'' if resize else f' of {prep.crop_size}x{prep.crop_size}'} to "
        f"{', '.join(outputs)}. Contract in metadata 'sktransfer.contract'.")
    del graph.metadata_props[:]
    entries = {"contract": json.dumps(contract), "version": __version__,
               "task": task, "classes": json.dumps(contract["classes"])}
    for key, value in entries.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = _META_PREFIX + key, value


def _estimator_name(estimator: object) -> str:
    if hasattr(estimator, "steps"):
        names = ", ".join(type(s).__name__ for _, s in estimator.steps
                          if s is not None and s != "passthrough")
        return f"Pipeline({names})"
    return type(estimator).__name__


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value




__all__: list[str] = []
