"""Turn a backbone spec into one object: feature body, output size, layer groups, preprocessing.

A spec is a torchvision classification model name (``"resnet50"``, also written
``"torchvision:resnet50"``) with ``weights`` (``"DEFAULT"``, a weights name such as
``"IMAGENET1K_V2"``, ``None`` for random initialisation, or a path to a local weights
file), a timm model (``"timm:convnext_tiny.fb_in22k"``, ``"hf-hub:org/repo"``; built by
:mod:`sktransfer._timm`), or any :class:`torch.nn.Module`. This is the only module that
knows torchvision's names.
"""

from __future__ import annotations

import copy
import difflib
import os
import threading
import urllib.error
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from . import _timm
from ._meta import output_shape
from ._timm import is_timm_spec
from .errors import WeightsUnavailableError
from .images import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

DEFAULT_MODEL = "efficientnet_b0"
HEAD_NAMES = ("fc", "classifier", "head", "heads", "_fc")
_MLP_LAYERS = (nn.Linear, nn.Dropout, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.GELU, nn.SiLU,
               nn.Tanh, nn.Identity, nn.Flatten)


@dataclass
class Backbone:
    """A pretrained network ready for transfer learning.

    Parameters
    ----------
    body : nn.Module
        Maps a normalised ``(N, 3, H, W)`` batch to pooled features ``(N, num_features)``.
        Its classification head is removed.
    num_features : int
        Size of the pooled feature vector.
    groups : list of (str, list of str)
        Ordered layer groups, stem first and last block last; each is a name and the
        names of the submodules of ``body.net`` it holds.
    preprocessing : Preprocessing
        Resize, crop and normalisation the weights expect.
    name : str
        A readable name of the architecture.
    weights_id : str or None
        Identifies the pretrained weights without hashing them (torchvision weights name,
        or a local file's path, size and modification time); None where only the tensors
        themselves identify them.
    decoder : nn.Module or None
        The pretrained decoder of a segmentation model (its ``body`` then returns a dict
        of feature maps); None for classification backbones.
    """

    body: nn.Module
    num_features: int
    groups: list[tuple[str, list[str]]]
    preprocessing: Preprocessing
    name: str
    weights_id: str | None = None
    decoder: nn.Module | None = None


class PooledBody(nn.Module):
    """Wraps a head-less network; flattens its output, global-average-pooling maps first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_features(self.net(x))


def pool_features(out: torch.Tensor) -> torch.Tensor:
    """Global average pool ``(N, C, H, W)`` maps (or ``(N, T, C)`` tokens) to ``(N, C)``."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    elif hasattr(out, "logits"):  # e.g. GoogLeNetOutputs / InceptionOutputs
        out = out.logits
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    return out.flatten(1)


# --------------------------------------------------------------------------- weights
def list_torchvision_models() -> list[str]:
    """Names of torchvision's ImageNet classification models."""
    return tvm.list_models(module=tvm)


def _check_model_name(name: str) -> None:
    names = list_torchvision_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown torchvision model {name!r}.{hint} Pass one of "
            "torchvision.models.list_models(module=torchvision.models), or an nn.Module."
        )


def _resolve_enum(name: str, weights: str | WeightsEnum) -> WeightsEnum:
    enum_cls = tvm.get_model_weights(name)
    if isinstance(weights, WeightsEnum):
        return weights
    key = weights.split(".")[-1]
    try:
        return enum_cls[key]
    except KeyError:
        valid = ["DEFAULT", *enum_cls.__members__]
        raise ValueError(
            f"Unknown weights {weights!r} for {name!r}; valid names are {valid}, None, or a "
            "path to a local weights file"
        ) from None


def _cached_file(enum: WeightsEnum) -> Path:
    filename = os.path.basename(urlparse(enum.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _load_enum(name: str, enum: WeightsEnum, progress: bool, **kwargs: object) -> nn.Module:
    cached = _cached_file(enum)
    try:
        return tvm.get_model(name, weights=enum, progress=progress, **kwargs)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        if cached.exists():
            raise
        raise WeightsUnavailableError(
            f"Cannot load pretrained weights {enum} for {name!r}: they are not in the torch "
            f"hub cache ({cached}) and downloading failed ({exc}). Offline, either put the file "
            f"{cached.name} in $TORCH_HOME/hub/checkpoints (TORCH_HOME is now "
            f"{os.environ.get('TORCH_HOME', 'unset')}), pass weights='/path/to/weights.pth' "
            "(a local state dict), or use weights=None for random initialisation."
        ) from exc


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weights file safely (``torch.load(..., weights_only=True)``).

    Accepts a plain state dict or a checkpoint holding one under ``"state_dict"``,
    ``"model_state_dict"`` or ``"model"``; a ``"module."`` prefix (DataParallel) is removed.

    Parameters
    ----------
    path : path
        A file written by ``torch.save``.

    Returns
    -------
    dict of str to torch.Tensor
        The state dict, ready for ``load_state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Cannot load weights file {path} with torch.load(weights_only=True): {exc}"
        ) from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"Weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(module: nn.Module, path: str | os.PathLike) -> None:
    state = load_state_dict_file(path)
    result = module.load_state_dict(state, strict=False)
    # The classifier is removed anyway: a file without it (saved from a feature body) is fine.
    missing = [k for k in result.missing_keys if k.split(".")[0] not in HEAD_NAMES]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"Weights file {path} does not match the architecture: "
            f"{len(missing)} missing keys {missing[:5]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:5]}"
        )


def _looks_like_path(weights: object) -> bool:
    if isinstance(weights, Path):
        return True
    return isinstance(weights, str) and (
        os.sep in weights or weights.endswith((".pth", ".pt", ".bin")) or os.path.exists(weights)
    )


# --------------------------------------------------------------------------- head removal
def _strip_sequential_head(seq: nn.Sequential, is_head: bool = False) -> nn.Module:
    """Drop the trailing MLP (Linear/Dropout/activation layers with a Linear) of a Sequential.

    ``is_head``: ``seq`` is a classifier attribute; one made of convolutions (SqueezeNet)
    is replaced by global pooling.
    """
    children = list(seq.children())
    cut = len(children)
    while cut > 0 and isinstance(children[cut - 1], _MLP_LAYERS):
        cut -= 1
    if not any(isinstance(c, nn.Linear) for c in children[cut:]):
        if is_head and any(isinstance(c, nn.Conv2d) for c in children):
            return nn.AdaptiveAvgPool2d(1)
        return seq
    kept = children[:cut]
    return nn.Sequential(*kept) if kept else nn.Identity()


def strip_head(net: nn.Module) -> nn.Module:
    """Remove the classification head of ``net`` in place and return it."""
    for attr in HEAD_NAMES:
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            setattr(net, attr, nn.Identity())
            break
        if isinstance(head, nn.Sequential):
            setattr(net, attr, _strip_sequential_head(head, is_head=True))
            break
    else:
        if isinstance(net, nn.Sequential):
            net = _strip_sequential_head(net)
    avgpool = getattr(net, "avgpool", None)
    if isinstance(avgpool, nn.AdaptiveAvgPool2d) and avgpool.output_size not in (1, (1, 1)):
        net.avgpool = nn.AdaptiveAvgPool2d(1)  # VGG/AlexNet: pool the last conv stage globally
    for attr in ("aux_logits", "AuxLogits", "aux1", "aux2"):  # Inception/GoogLeNet side heads
        if attr == "aux_logits" and hasattr(net, attr):
            net.aux_logits = False
        elif isinstance(getattr(net, attr, None), nn.Module):
            setattr(net, attr, None)
    return net


# --------------------------------------------------------------------------- layer groups
def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def default_groups(net: nn.Module) -> list[tuple[str, list[str]]]:
    """The natural stages of ``net``, stem first: ResNet-like, ``features``-based, or children."""
    if all(hasattr(net, a) for a in ("conv1", "layer1", "layer4")):  # ResNet / ResNeXt
        stem = [n for n in ("conv1", "bn1") if hasattr(net, n)]
        return [("stem", stem)] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]
    if hasattr(net, "stem") and hasattr(net, "trunk_output"):  # RegNet
        blocks = [f"trunk_output.{n}" for n, _ in net.trunk_output.named_children()]
        return [("stem", ["stem"])] + [(b, [b]) for b in blocks]
    attr = "features" if hasattr(net, "features") else "layers"
    features = getattr(net, attr, None)
    if isinstance(features, nn.Sequential) and not hasattr(net, "encoder"):
        children = list(features.named_children())
        if any(n.startswith("denseblock") for n, _ in children):  # DenseNet
            groups: list[tuple[str, list[str]]] = [("stem", [])]
            for name, _ in children:
                if name.startswith("denseblock"):
                    groups.append((name, []))
                groups[-1][1].append(f"features.{name}")
            return groups
        if any(isinstance(m, nn.MaxPool2d) for _, m in children):  # VGG/AlexNet: pool-ended
            blocks: list[tuple[str, list[str]]] = [(f"block{1}", [])]
            for name, module in children:
                blocks[-1][1].append(f"{attr}.{name}")
                if isinstance(module, nn.MaxPool2d):
                    blocks.append((f"block{len(blocks) + 1}", []))
            return [(g, m) for g, m in blocks if m]
        names = [f"{attr}.{n}" for n, m in children if _has_params(m)]
        return [(n, [n]) for n in names]
    if hasattr(net, "encoder") and hasattr(net.encoder, "layers"):  # ViT
        prefix = [n for n in ("conv_proj",) if hasattr(net, n)]
        layers = [f"encoder.layers.{n}" for n, _ in net.encoder.layers.named_children()]
        return [("stem", prefix)] + [(n, [n]) for n in layers] + [("encoder.ln", ["encoder.ln"])]
    return _generic_groups(net)


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _generic_groups(net: nn.Module) -> list[tuple[str, list[str]]]:
    """Top-level children with parameters, in order; a ModuleList of blocks is expanded
    into its blocks, and a normalisation layer joins the group before it (a conv and its
    BatchNorm train together)."""
    units: list[tuple[str, nn.Module]] = []
    for name, child in net.named_children():
        if isinstance(child, nn.ModuleList):
            units += [(f"{name}.{n}", m) for n, m in child.named_children()]
        else:
            units.append((name, child))
    groups: list[tuple[str, list[str]]] = []
    for name, module in units:
        if not _has_params(module):
            continue
        if isinstance(module, _NORMS) and groups:
            groups[-1][1].append(name)
        else:
            groups.append((name, [name]))
    return groups


def parse_groups(groups: list | dict) -> list[tuple[str, list[str]]]:
    """The ``groups`` parameter as ``(name, submodule names)`` pairs, stem first."""
    items = groups.items() if isinstance(groups, dict) else (
        (g if isinstance(g, str) else "+".join(g), g) for g in groups)
    return [(str(k), [v] if isinstance(v, str) else list(v)) for k, v in items]


def check_groups(net: nn.Module, groups: list[tuple[str, list[str]]]) -> None:
    """Raise a clear error if a group names a submodule (or parameter) that ``net`` lacks."""
    names = {**dict(net.named_modules()), **dict(net.named_parameters())}
    for group, members in groups:
        for member in members:
            if member not in names:
                raise ValueError(
                    f"Layer group {group!r} names {member!r}, which is not a submodule; "
                    f"top-level children are {[n for n, _ in net.named_children()]}"
                )


# --------------------------------------------------------------------------- preprocessing
def _weights_preprocessing(enum: WeightsEnum) -> dict:
    t = enum.transforms()
    return {
        "resize_size": int(t.resize_size[0]),
        "crop_size": int(t.crop_size[0]),
        "mean": tuple(t.mean),
        "std": tuple(t.std),
        "interpolation": t.interpolation,
    }


def make_preprocessing(
    base: dict | None,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: tuple | None = None,
    std: tuple | None = None,
) -> Preprocessing:
    """Combine the weights' own preprocessing (``base``) with user overrides."""
    base = dict(base or {"resize_size": 256, "crop_size": 224,
                         "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    if image_size is not None:
        ratio = base["resize_size"] / base["crop_size"]
        base["crop_size"] = int(image_size)
        base["resize_size"] = int(resize_size) if resize_size is not None else round(
            image_size * ratio)
    elif resize_size is not None:
        base["resize_size"] = int(resize_size)
    if base["resize_size"] < base["crop_size"]:
        raise ValueError(
            f"resize_size={base['resize_size']} is smaller than the crop size "
            f"{base['crop_size']}"
        )
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            value = tuple(float(v) for v in value)
            if len(value) != 3:
                raise ValueError(f"{key} must have 3 values (R, G, B), got {value}")
            base[key] = value
    if any(s <= 0 for s in base["std"]):
        raise ValueError(f"std values must be positive, got {base['std']}")
    return Preprocessing(**base)


# --------------------------------------------------------------------------- loading memo
_MEMO: OrderedDict[tuple, tuple[nn.Module, dict, list[int]]] = OrderedDict()
_MEMO_SIZE = 2
_MEMO_LOCK = threading.Lock()


def _torchvision_net(model: str, weights, progress: bool,
                     share_weights: bool = False) -> tuple[nn.Module, dict, str | None]:
    """A torchvision network with its weights, the weights' preprocessing and an id.

    Pretrained networks are memoised per process (the last two specs), so the fits of a
    cross-validation do not rebuild and reload the same weights; each call gets its own
    deep copy, or with ``share_weights`` its own modules over the memo's tensors. Random
    initialisation is never memoised.
    """
    _check_model_name(model)
    base = _weights_preprocessing(tvm.get_model_weights(model).DEFAULT)
    if weights is None:
        return tvm.get_model(model, weights=None), base, None
    if _looks_like_path(weights):
        path = Path(weights).resolve()
        stat = path.stat() if path.is_file() else None
        key = (model, "file", str(path), stat and stat.st_size, stat and stat.st_mtime_ns)
        weights_id = f"file:{path}:{key[3]}:{key[4]}"
    elif isinstance(weights, (str, WeightsEnum)):
        enum = _resolve_enum(model, weights)
        base = _weights_preprocessing(enum)
        key = (model, "enum", str(enum), torch.hub.get_dir())
        weights_id = f"torchvision:{model}:{enum}"
    else:
        raise TypeError(f"weights must be a str, a path or None, got {type(weights).__name__}")
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
        if hit is not None and not _untouched(hit[0], hit[2]):
            del _MEMO[key]  # a shared tensor was changed in place: load the file again
            hit = None
        if hit is not None:
            _MEMO.move_to_end(key)
            return _copy(hit[0], share_weights), dict(hit[1]), weights_id
    if key[1] == "file":
        net = tvm.get_model(model, weights=None)
        _load_into(net, weights)
    else:
        net = _load_enum(model, enum, progress)
    with _MEMO_LOCK:
        stored = copy.deepcopy(net)
        _MEMO[key] = (stored, dict(base), _versions(stored))
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return net, base, weights_id


def _versions(net: nn.Module) -> list[int]:
    """The version counters of ``net``'s tensors: each in-place change increments one, and
    tensors made with ``detach()`` (the shared ones) count on the same counter."""
    return [t._version for t in (*net.parameters(), *net.buffers())]


def _untouched(net: nn.Module, versions: list[int]) -> bool:
    """Whether no tensor of a memoised network was changed in place since it was stored
    (a user's in-place edit of a shared extractor's weights must not reach other fits,
    nor the embedding cache, whose keys name the weights, not their values)."""
    return _versions(net) == versions


def _copy(net: nn.Module, share_weights: bool) -> nn.Module:
    """A deep copy of ``net``; with ``share_weights`` new modules whose parameters and
    buffers are new tensor objects over the same storage (no data is copied, and no
    Python-level deep copy: 4 ms instead of 45 for an EfficientNet-B0)."""
    if not share_weights:
        return copy.deepcopy(net)
    return _share(net, {})


def _share(module: nn.Module, memo: dict[int, object]) -> nn.Module:
    """``module`` rebuilt with its own containers (submodules, parameters, buffers, hooks,
    every other dict, list or set attribute) over the same tensor storage."""
    if id(module) in memo:
        return memo[id(module)]
    new = object.__new__(type(module))
    # a shallow copy of __dict__, each container copied (its type kept)
    new.__dict__.update({name: value.copy() if isinstance(value, (dict, list, set)) else value
                         for name, value in vars(module).items()})
    memo[id(module)] = new

    def tensor(t, make):
        if t is None:
            return None
        if id(t) not in memo:
            memo[id(t)] = make(t)
        return memo[id(t)]

    for key, p in module._parameters.items():
        new._parameters[key] = tensor(p, lambda p: nn.Parameter(
            p.detach(), requires_grad=p.requires_grad))
    for key, b in module._buffers.items():
        new._buffers[key] = tensor(b, lambda b: b.detach())
    for key, child in module._modules.items():
        new._modules[key] = None if child is None else _share(child, memo)
    return new


# --------------------------------------------------------------------------- entry point
def load_backbone(
    model: str | nn.Module = DEFAULT_MODEL,
    weights: str | os.PathLike | WeightsEnum | None = "DEFAULT",
    *,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: tuple | None = None,
    std: tuple | None = None,
    groups: list | dict | None = None,
    progress: bool = False,
    share_weights: bool = False,
) -> Backbone:
    """Build a :class:`Backbone` from a spec.

    Parameters
    ----------
    model : str or nn.Module, default="efficientnet_b0"
        A torchvision classification model name (optionally ``"torchvision:<name>"``), a
        timm model ``"timm:<name>[.<pretrained tag>]"`` or ``"hf-hub:<org>/<repo>"`` (needs
        ``pip install 'sktransfer[timm]'``), or a module (deep-copied, never modified).
    weights : str, path, WeightsEnum or None, default="DEFAULT"
        For a name: a weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``...), ``None`` for random
        initialisation, or a local weights file. For a timm model: ``"DEFAULT"`` (timm's
        pretrained weights, through the Hugging Face cache), ``None``, or a local
        ``.safetensors``/``.pth`` file. For a module: ``"DEFAULT"``/``None`` keep its
        weights, a path loads a state dict into it.
    image_size, resize_size, mean, std : optional
        Override the crop size, resize size and normalisation of the weights.
    groups : list or dict, optional
        Layer groups (stem first), each a submodule name or list of names; a dict maps group
        names to them. Default: the architecture's natural stages.
    progress : bool, default=False
        Show a download progress bar.
    share_weights : bool, default=False
        For callers that never change the weights (a frozen feature extractor): pretrained
        weights the process already loaded are shared with its memo rather than copied
        (a fit in a cross-validation then costs milliseconds instead of a copy of the
        network). Moving the network to another device or memory format is fine; changing
        its tensors in place is not.

    Returns
    -------
    Backbone
        The network without its head, its feature size, layer groups and preprocessing.
    """
    weights_id = None
    timm_groups = None
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model)
        name = type(model).__name__
        if _looks_like_path(weights):
            _load_into(net, weights)
        elif weights not in (None, "DEFAULT"):
            raise ValueError(
                f"weights={weights!r} cannot apply to an nn.Module; use 'DEFAULT' or None to "
                "keep its weights, or a path to a state dict file"
            )
        base = None
    elif is_timm_spec(model):
        net, base, weights_id, timm_groups = _timm.create(model, weights, image_size)
        name = model
    elif isinstance(model, str):
        model = model.removeprefix("torchvision:")
        net, base, weights_id = _torchvision_net(model, weights, progress, share_weights)
        name = model
    else:
        raise TypeError(
            f"model must be a torchvision model name or an nn.Module, got {type(model).__name__}"
        )
    if timm_groups is None:
        net = strip_head(net)
    net.eval()
    if groups is None:
        layer_groups = timm_groups or default_groups(net)
    else:
        layer_groups = parse_groups(groups)
    check_groups(net, layer_groups)
    body = PooledBody(net)
    preprocessing = make_preprocessing(base, image_size, resize_size, mean, std)
    size = preprocessing.crop_size
    num_features = output_shape(body, (1, 3, size, size))[1]  # shapes only, no arithmetic
    return Backbone(body, int(num_features), layer_groups, preprocessing, name, weights_id)
