"""timm backbones: ``"timm:<name>[.<tag>]"`` and ``"hf-hub:<org>/<repo>"`` specs.

The only module that knows timm. It builds the network (random, a local weights file, or
timm's pretrained weights through its own Hugging Face cache), removes its classifier with
timm's ``reset_classifier(0)`` (so the network returns its pooled pre-logits features: the
class token or average pool of a ViT, as the model is configured), reads the preprocessing
from ``timm.data.resolve_model_data_config`` and the layer groups from the model's own
``group_matcher``.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path

from torch import nn
from torchvision.transforms import InterpolationMode

from ..errors import WeightsUnavailableError
from . import _hub
from ._backbone import Built
from ._weights import file_id, load_state_dict_file

PREFIXES = ("timm:", "hf-hub:")
SEGMENTATION = False
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


def accepts(spec: object) -> bool:
    """Whether ``spec`` names a timm model."""
    return isinstance(spec, str) and spec.startswith(PREFIXES)


def _timm():
    try:
        import timm
    except ImportError:
        raise ImportError("timm backbones need timm: pip install 'sktransfer[timm]' "
                          "(or pip install timm)") from None
    return timm


def _timm_name(spec: str) -> str:
    """What ``timm.create_model`` takes: the name (with its tag) or ``hf-hub:org/repo``."""
    return spec.removeprefix("timm:")


def _check_name(timm, name: str) -> None:
    if name.startswith("hf-hub:"):
        return
    arch = name.split(".")[0]
    if not timm.is_model(arch):  # the registry lookup; the full list only for suggestions
        known = timm.list_models()
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {', '.join(repr(f'timm:{c}') for c in close)}?" if close else ""
        raise ValueError(f"Unknown timm model {name!r}.{hint} See timm.list_models().")


def build(spec: str, weights: object, *, image_size: int | None = None,
          progress: bool = False, share_weights: bool = False) -> Built:
    """Build a timm network without its classifier.

    Models with a fixed input size (ViTs) are built for ``image_size`` when it is given
    (timm resamples pretrained position embeddings to it). ``progress`` and
    ``share_weights`` are not used (timm shows its own progress; nothing is memoised).

    Returns
    -------
    Built
        The network (returning pooled pre-logits features), its preprocessing, what
        identifies its weights, and its layer groups from timm's ``group_matcher``.
    """
    timm = _timm()
    name = _timm_name(spec)
    _check_name(timm, name)
    options = {}
    if image_size is not None and _fixed_input_size(timm, name):
        options["img_size"] = int(image_size)
    weights_id = None
    if weights is None:
        net = timm.create_model(name, pretrained=False, num_classes=0, **options)
    elif isinstance(weights, str) and weights == "DEFAULT":
        net = _pretrained(timm, name, options)
        net.reset_classifier(0)
        weights_id = f"timm:{name}"
    elif isinstance(weights, (str, os.PathLike)) and Path(weights).is_file():
        net = timm.create_model(name, pretrained=False, num_classes=0, **options)
        _load_file(net, Path(weights))
        weights_id = file_id(weights)
    else:
        raise ValueError(f"weights={weights!r} for a timm model: use 'DEFAULT' (timm's "
                         "pretrained weights), None (random) or an existing local weights "
                         "file (.safetensors or .pth)")
    net.eval()
    return Built(net, spec, preprocessing(timm, net), weights_id, groups(timm, net))


def _fixed_input_size(timm, name: str) -> bool:
    try:
        return bool(timm.models.get_pretrained_cfg(name.removeprefix("hf-hub:"))
                    .fixed_input_size)
    except Exception:  # no config for the name: build it as timm does by default
        return False


def _pretrained(timm, name: str, options: dict) -> nn.Module:
    try:
        hub_id = timm.models.get_pretrained_cfg(name.removeprefix("hf-hub:")).hf_hub_id
    except Exception:  # hf-hub: specs and models without a hub config: let timm decide
        hub_id = name.removeprefix("hf-hub:") if name.startswith("hf-hub:") else None
    try:
        _hub.check_available(hub_id)
        return timm.create_model(name, pretrained=True, **options)
    except Exception as exc:  # hub errors vary: offline, missing cache, no weights
        if isinstance(exc, (ValueError, RuntimeError)) and "pretrained" not in str(exc):
            raise
        raise WeightsUnavailableError(
            f"Cannot load timm's pretrained weights for {name!r}: not in the Hugging Face "
            f"cache ({_hub.cache_dir()}) and downloading failed ({type(exc).__name__}: "
            f"{exc}). Offline, fill the cache on a connected machine (HF_HOME), pass "
            "weights='/path/to/file.safetensors' (a local state dict), or use weights=None "
            "for random initialisation.") from exc


def _load_file(net: nn.Module, path: Path) -> None:
    """Load a ``.safetensors`` or ``.pth`` state dict (no unpickling) into ``net``, whose
    classifier is already removed: the file's classifier tensors, if any, are ignored."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = load_state_dict_file(path)
    classifier = net.pretrained_cfg.get("classifier") or "head"
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    own = net.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise ValueError(f"Weights file {path} does not match the architecture: tensor "
                             f"{key!r} has shape {tuple(tensor.shape)}, the model expects "
                             f"{tuple(own[key].shape)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise ValueError(f"Weights file {path} does not match the architecture: "
                         f"{len(missing)} missing tensors, {len(unexpected)} unexpected "
                         f"(first: {first!r})")
    net.load_state_dict(state)


def preprocessing(timm, net: nn.Module) -> dict:
    """Keyword arguments of :class:`Preprocessing` from the model's data config."""
    config = timm.data.resolve_model_data_config(net)
    crop = int(config["input_size"][-1])
    return {"resize_size": math.floor(crop / config.get("crop_pct", 1.0)),
            "crop_size": crop, "mean": tuple(float(v) for v in config["mean"]),
            "std": tuple(float(v) for v in config["std"]),
            "interpolation": _INTERPOLATION.get(config.get("interpolation"),
                                                InterpolationMode.BICUBIC)}


def groups(timm, net: nn.Module) -> list[tuple[str, list[str]]]:
    """Layer groups from timm's ``group_matcher``; members are module or parameter names.

    A member is a submodule when all of its parameters belong to the group, else the
    parameter itself (``cls_token``, ``pos_embed``).
    """
    from timm.models import group_parameters

    by_group = group_parameters(net, net.group_matcher(coarse=True))
    owner = {}
    for gid, names in by_group.items():
        for n in names:
            owner[n] = gid
    modules = dict(net.named_modules())
    result = []
    for index, names in enumerate(by_group.values()):
        members: list[str] = []
        for n in names:
            member = n
            parent = n.rpartition(".")[0]
            while parent and all(owner.get(f"{parent}.{p}") == owner[n]
                                 for p, _ in modules[parent].named_parameters()):
                member, parent = parent, parent.rpartition(".")[0]
            if member not in members and not any(member.startswith(f"{m}.") for m in members):
                members.append(member)
        name = "stem" if index == 0 else "+".join(members) if len(members) <= 3 else \
            f"{members[0]}+{len(members) - 1}"
        # timm's last group of some models is the head's pre-logits part (a norm); the new
        # head is "head" in summary()
        result.append(("pre_logits" if name == "head" else name, members))
    return result

