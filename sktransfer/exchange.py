"""Pickle-free model exchange: one safetensors file holding weights and a JSON config.

joblib and pickle files run code when loaded. An exported file holds only tensors (the
safetensors format: a JSON header and raw little-endian data) and, in the header's
metadata, a JSON document with the estimator's parameters and fitted attributes.
:func:`import_model` reads it without unpickling and without importing any module named
in the file, so a file from an untrusted source cannot run code. The imported estimator
predicts exactly as the exported one did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from . import __version__
from ._adaptation import DomainAdaptationClassifier
from ._extractor import PretrainedFeatureExtractor
from ._finetune import FineTuneClassifier
from ._finetune_base import BaseFineTuner
from ._lora import tensor_digest
from ._plan import ADAPTER_MARK
from ._regressor import FineTuneRegressor
from ._segmenter import FineTuneSegmenter
from ._zero_shot import ZeroShotClassifier
from .images import Preprocessing
from .io import atomic_dump

FORMAT = "sktransfer.safe"
VERSION = 1
_META_KEY = "sktransfer"
# Tensors that are fitted arrays of the estimator, not weights of its network.
_ARRAY_PREFIX = "sktransfer.fitted."
# Training-only parameters holding code or models (a distillation teacher): not exported,
# defaults on import.
_CODE_PARAMS = {"augment": False, "callbacks": None, "teacher": None}
# Parameters that are dicts keyed by labels (JSON would turn the keys into str): exported
# as [key, value] pairs.
_LABEL_DICTS = ("class_weight", "class_descriptions")
_ESTIMATORS = {cls.__name__: cls for cls in (FineTuneClassifier, FineTuneRegressor,
                                              DomainAdaptationClassifier, FineTuneSegmenter,
                                              PretrainedFeatureExtractor, ZeroShotClassifier)}


def _json_param(name: str, value: object) -> object:
    if name in _CODE_PARAMS:
        return _CODE_PARAMS[name] if not isinstance(value, bool) else value
    if name in _LABEL_DICTS and isinstance(value, dict):  # JSON keys would become str
        return {"pairs": [[_json_param(f"{name} key", k), _json_param(name, v)]
                          for k, v in value.items()]}
    if name == "model" and isinstance(value, nn.Module):
        return {"custom": f"{type(value).__module__}.{type(value).__qualname__}"}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):  # e.g. a ZeroShotClassifier's classes
        return value.tolist()
    if isinstance(value, np.generic):  # numpy labels: their Python value
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_json_param(name, v) for v in value]
    try:
        json.dumps(value)
    except TypeError:
        raise ValueError(
            f"parameter {name}={value!r} cannot be exported to JSON; set it to a plain "
            "value (str, number, list) or use joblib"
        ) from None
    return value


def _label(value: object) -> object:
    """A label read back from JSON (a list, for a tuple label, becomes a tuple again)."""
    return tuple(value) if isinstance(value, list) else value


def _preprocessing_config(prep: Preprocessing) -> dict:
    return {"resize_size": prep.resize_size, "crop_size": prep.crop_size,
            "mean": list(prep.mean), "std": list(prep.std),
            "interpolation": prep.interpolation.value}


def _preprocessing(config: dict) -> Preprocessing:
    return Preprocessing(int(config["resize_size"]), int(config["crop_size"]),
                         tuple(float(v) for v in config["mean"]),
                         tuple(float(v) for v in config["std"]),
                         InterpolationMode(config["interpolation"]))


def export_model(estimator: BaseFineTuner | PretrainedFeatureExtractor,
                 path: str | os.PathLike, *, adapters_only: bool = False) -> Path:
    """Write a fitted estimator to a pickle-free ``.safetensors`` file (atomically).

    Parameters
    ----------
    estimator : FineTuneClassifier, FineTuneRegressor, DomainAdaptationClassifier, \
        FineTuneSegmenter, PretrainedFeatureExtractor or ZeroShotClassifier
        Fitted. Training-only callables (``augment``, ``callbacks``) are not exported.
    path : path
        Destination file, conventionally ending in ``.safetensors``.
    adapters_only : bool, default=False
        For a model fine-tuned with separate low-rank adapters (``adapter="lora",
        adapter_merge=False``): write only what training changed (the adapters and the
        head), a small file; :func:`import_model` rebuilds the frozen base from the
        model's spec and ``weights`` (for a model built from your own module, pass that
        module, with the same pretrained weights, as ``model=``).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        For other estimators (a Pipeline's scikit-learn steps are not covered: export
        the extractor with this function and the rest with, e.g., ``skops.io``, or the
        whole pipeline as one ONNX graph with :func:`~sktransfer.export_onnx`).
    """
    from safetensors.torch import save_file

    name = type(estimator).__name__
    if name not in _ESTIMATORS:
        raise TypeError(f"export_model takes one of {sorted(_ESTIMATORS)}, got {name}")
    params = {k: _json_param(k, v) for k, v in estimator.get_params(deep=False).items()}
    module, preprocessing, groups, fitted = estimator.__sktransfer_export__()
    fitted = {**fitted, "preprocessing": _preprocessing_config(preprocessing),
              "groups": [[g, list(m)] for g, m in groups]}
    arrays = fitted.pop("_arrays", {})  # fitted arrays beside the weights (a detector's)
    config = {"format": FORMAT, "version": VERSION, "estimator": name,
              "sktransfer_version": __version__, "torch_version": torch.__version__,
              "params": params, "fitted": fitted}
    state = module.state_dict()
    if adapters_only:
        if fitted.get("adapters") != "separate":
            raise ValueError("adapters_only=True needs a model fitted with separate "
                             "adapters (adapter='lora', adapter_merge=False)")
        if estimator.weights is None:
            raise ValueError("adapters_only=True: the model's base has random weights "
                             "(weights=None), which import_model cannot rebuild; export "
                             "the whole model")
        buffers = {f"body.{n}" for n, _ in module.body.named_buffers()}
        base = {k: v for k, v in state.items() if k.startswith("body.")
                and ADAPTER_MARK not in k and k not in buffers}
        # what training changed: adapters, head, and the body's buffers (AdaBN and
        # BatchNorm statistics); the frozen base is checked by its digest on import
        state = {k: v for k, v in state.items() if k not in base}
        fitted["adapters_only"] = True
        fitted["base_digest"] = tensor_digest(base)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    tensors.update({_ARRAY_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v))
                    for k, v in arrays.items()})
    metadata = {_META_KEY: json.dumps(config)}
    return atomic_dump(tensors, path, dump=lambda obj, p: save_file(obj, p, metadata=metadata))


def read_config(path: str | os.PathLike) -> dict:
    """Read the JSON config of an exported file (no tensors are read).

    Parameters
    ----------
    path : path
        A file written by :func:`export_model`.

    Returns
    -------
    dict
        The format, its version, the estimator's name, its parameters and its fitted
        values, as :func:`export_model` wrote them.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a safetensors file written by :func:`export_model`.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # the safetensors parser's errors vary by version
        raise ValueError(f"{path} is not a safetensors file: {exc}") from None
    try:
        config = json.loads(metadata[_META_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path} is a safetensors file but not an sktransfer export "
                         "(no valid 'sktransfer' metadata)") from None
    if config.get("format") != FORMAT or config.get("estimator") not in _ESTIMATORS:
        raise ValueError(f"{path}: unknown format {config.get('format')!r} / estimator "
                         f"{config.get('estimator')!r}")
    if int(config.get("version", 0)) > VERSION:
        raise ValueError(f"{path} was written by a newer sktransfer (format version "
                         f"{config['version']}); this one reads up to {VERSION}")
    return config


def import_model(path: str | os.PathLike, model: nn.Module | None = None,
                 device: str | None = None) -> BaseFineTuner | PretrainedFeatureExtractor:
    """Load an estimator written by :func:`export_model`, without unpickling anything.

    Parameters
    ----------
    path : path
        The exported ``.safetensors`` file.
    model : torch.nn.Module, default=None
        The architecture, required when the estimator was built from your own module
        (the file names its class but never imports it); its weights are replaced.
    device : str, default=None
        Overrides the exported ``device`` parameter.

    Returns
    -------
    FineTuneClassifier, FineTuneRegressor, DomainAdaptationClassifier, \
        FineTuneSegmenter, PretrainedFeatureExtractor or ZeroShotClassifier
        Fitted, predicting exactly as the exported estimator.
    """
    from safetensors.torch import load_file

    config = read_config(path)
    cls = _ESTIMATORS[config["estimator"]]
    params = dict(config["params"])
    unknown = set(params) - set(cls().get_params())
    if unknown:
        raise ValueError(f"{path}: unknown parameters {sorted(unknown)} for {cls.__name__}")
    custom = isinstance(params.get("model"), dict)
    if custom and model is None:
        raise ValueError(
            f"{path} holds a model built from a custom module "
            f"({params['model'].get('custom')}); pass model=<a module of that architecture> "
            "(command line: sktransfer predict --model MODULE:FACTORY)"
        )
    if model is not None:
        params["model"] = model
    elif not isinstance(params.get("model"), str):
        raise ValueError(f"{path}: invalid model entry {params.get('model')!r}")
    for key in _LABEL_DICTS:
        if isinstance(params.get(key), dict):
            params[key] = {_label(k): v for k, v in params[key]["pairs"]}
    for key in ("mean", "std"):
        if params.get(key) is not None:
            params[key] = tuple(params[key])
    if device is not None:
        params["device"] = device
    estimator = cls(**params)
    fitted = config["fitted"]
    prep = _preprocessing(fitted["preprocessing"])
    groups = [(str(g), [str(m) for m in members]) for g, members in fitted["groups"]]
    if fitted.get("adapters_only"):  # the frozen base comes from the model's weights
        backbone = estimator.__sktransfer_architecture__(prep, groups, pretrained=True)
    else:
        backbone = estimator.__sktransfer_architecture__(prep, groups)
    state = load_file(path)
    arrays = {k[len(_ARRAY_PREFIX):]: state.pop(k).numpy() for k in list(state)
              if k.startswith(_ARRAY_PREFIX)}
    if arrays:
        fitted = {**fitted, "_arrays": arrays}
    try:
        return estimator.__sktransfer_restore__(backbone, state, fitted)
    except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped tensors
        if "state_dict" not in str(exc):
            raise
        raise ValueError(f"{path}: the weights do not fit the architecture: {exc}") from None


__all__ = ["export_model", "import_model", "read_config"]
