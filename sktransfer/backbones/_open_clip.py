"""open_clip's vision-language models (CLIP and its kin) as a backbone spec; the only
module that knows open_clip.

Specs: ``"open_clip:<architecture>[/<pretrained tag>]"`` (``"open_clip:ViT-B-32/
laion2b_s34b_b79k"``; the names of ``open_clip.list_pretrained()``), and open_clip's own
``"open_clip:local-dir:<folder>"`` (a folder with ``open_clip_config.json`` and its
weights) and ``"open_clip:hf-hub:<org>/<repo>"``. ``weights``: ``"DEFAULT"`` (the spec's
pretrained tag, through open_clip's download and cache; the folder's or repo's own
weights), ``None`` (random initialisation) or a local open_clip state-dict file (``.pt``,
``.bin``, ``.safetensors``; read with ``weights_only=True`` or safetensors, no unpickling).

The backbone's body returns the image tower's embeddings in the joint image-text space,
normalised to unit length; ``Backbone.text`` maps strings to normalised embeddings in the
same space, with the model's ``logit_scale``. Preprocessing follows the model's
``preprocess_cfg`` (resize the shorter side, centre crop, CLIP's mean and std).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import InterpolationMode

from ..errors import WeightsUnavailableError
from . import _hub, _memo
from ._backbone import Built
from ._groups import _generic_groups
from ._weights import file_id, looks_like_path

PREFIX = "open_clip:"
SEGMENTATION = False
_SCHEMAS = ("local-dir:", "hf-hub:")
_INTERPOLATION = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
                  "nearest": InterpolationMode.NEAREST}
_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def accepts(spec: object) -> bool:
    """Whether ``spec`` names an open_clip model."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


class ImageTower(nn.Module):
    """The image side of a vision-language model: images to unit-length embeddings."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(x).float(), dim=-1)


class TextTower(nn.Module):
    """The text side: a list of strings to unit-length embeddings in the images' space.

    ``logit_scale`` is the model's temperature (``exp`` of its learned parameter): the
    scale by which it multiplies image-text cosines into logits.
    """

    def __init__(self, model: nn.Module, tokenizer: object):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.context_length = int(getattr(tokenizer, "context_length", 77))

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.encode(self.tokenizer(list(texts)).to(device))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings of tokenised texts ``(n, context_length)``."""
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ImportError("open_clip models need open_clip: pip install 'sktransfer[clip]' "
                          "(or pip install open_clip_torch)") from None
    return open_clip


def parse(spec: str) -> tuple[str, str | None]:
    """``(name open_clip takes, pretrained tag or None)`` of an ``open_clip:`` spec."""
    name = spec.removeprefix(PREFIX)
    if name.startswith(_SCHEMAS):
        return name, None
    arch, _, tag = name.partition("/")
    return arch, tag or None


def _check_name(open_clip, name: str) -> None:
    if name.startswith(_SCHEMAS):
        if name.startswith("local-dir:") and not Path(name.removeprefix("local-dir:")).is_dir():
            raise ValueError(f"open_clip model folder not found: {name!r}")
        return
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(repr(f'open_clip:{c}') for c in close)}?" \
            if close else ""
        raise ValueError(f"Unknown open_clip model {name!r}.{hint} See "
                         "open_clip.list_models() and open_clip.list_pretrained().")


def build(spec: str, weights: object, *, image_size: int | None = None,
          progress: bool = False, share_weights: bool = False) -> Built:
    """The image tower (body) and text tower of an open_clip model (see module doc).

    Pretrained models are memoised per process, as torchvision's are; random ones never.
    """
    open_clip = _open_clip()
    name, tag = parse(spec)
    _check_name(open_clip, name)
    options = {} if image_size is None else {"force_image_size": int(image_size)}
    if weights is None:
        key, weights_id, pretrained = None, None, None
    elif looks_like_path(weights):
        if not Path(weights).is_file():
            raise FileNotFoundError(f"Weights file not found: {weights}")
        weights_id = file_id(weights)
        key, pretrained = (name, weights_id, image_size), str(weights)
    elif isinstance(weights, str) and weights == "DEFAULT":
        weights_id = f"open_clip:{name}/{tag}" if tag else f"open_clip:{name}"
        if name.startswith("local-dir:"):  # the folder's weights: identified by their file
            weights_id = _folder_weights_id(name)
        key, pretrained = (name, weights_id, image_size), tag
    else:
        raise ValueError(f"weights={weights!r} for an open_clip model: use 'DEFAULT' (the "
                         "spec's pretrained tag or the folder's weights), None (random) or a "
                         "local open_clip state-dict file (.pt, .bin, .safetensors)")
    hit = _memo.recall(key, share_weights) if key is not None else None
    if hit is not None:
        model = hit[0]
    else:
        model = _create(open_clip, name, tag, weights, pretrained, options)
        model.eval()
        if key is not None:
            _memo.remember(key, model, {})
    tower = ImageTower(model.visual)
    return Built(tower, spec, _preprocessing(model.visual), weights_id, _groups(tower),
                 text=TextTower(model, _tokenizer(name)))


def _folder_weights_id(name: str) -> str:
    """The identity of a ``local-dir:`` folder's weights file (its path, size and time)."""
    folder = Path(name.removeprefix("local-dir:"))
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    return file_id(files[0]) if files else f"open_clip:{folder.resolve()}"


def _create(open_clip, name: str, tag: str | None, weights: object, pretrained: str | None,
            options: dict) -> nn.Module:
    """``open_clip.create_model`` with the weights asked for; offline and uncached, a
    :class:`WeightsUnavailableError` at once (no hub retries)."""
    plain = {"pretrained_image": False, "pretrained_text": False, **options}
    if weights is None:
        with _quiet_random_init():
            return open_clip.create_model(name, pretrained=None, load_weights=False, **plain)
    if weights != "DEFAULT" or name.startswith("local-dir:"):  # a local file or folder
        return open_clip.create_model(name, pretrained=pretrained, **plain)
    if tag is None and not name.startswith("hf-hub:"):
        raise ValueError(f"'open_clip:{name}' names no pretrained weights: write "
                         f"'open_clip:{name}/<tag>' with a tag of "
                         f"{open_clip.list_pretrained_tags_by_model(name)}, or pass "
                         "weights=None or a local weights file")
    config = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    if tag and not config:
        raise ValueError(f"Unknown pretrained tag {tag!r} for open_clip model {name!r}; "
                         f"its tags are {open_clip.list_pretrained_tags_by_model(name)}")
    hub_id = (config.get("hf_hub") or "").strip("/") or name.removeprefix("hf-hub:") or None
    try:
        _hub.check_available(hub_id if (config.get("hf_hub") or not tag) else None, _HUB_FILES)
        return open_clip.create_model(name, pretrained=tag, **plain)
    except Exception as exc:  # offline, missing cache, failed download
        raise WeightsUnavailableError(
            f"Cannot load open_clip's pretrained weights for {name!r} ({tag or 'hub'}): not "
            f"in the cache (Hugging Face: {_hub.cache_dir()}; open_clip's own: "
            f"{os.path.join('~', '.cache', 'clip')}) and downloading failed "
            f"({type(exc).__name__}: {exc}). Offline, fill the cache on a connected machine, "
            "pass weights='/path/to/open_clip_model.safetensors' (a local state dict), use "
            "'open_clip:local-dir:<folder>', or weights=None for random "
            "initialisation.") from exc


@contextlib.contextmanager
def _quiet_random_init():
    """open_clip warns through the root logger that a model without weights is random:
    with ``weights=None`` that is what the caller asked for."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str) -> object:
    return _open_clip().get_tokenizer(name)


def _preprocessing(visual: nn.Module) -> dict:
    """Keyword arguments of :class:`~sktransfer.images.Preprocessing` from the model's
    ``preprocess_cfg`` (resize the shorter side to the input size, centre crop)."""
    config = getattr(visual, "preprocess_cfg", {}) or {}
    size = config.get("size", getattr(visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return {"resize_size": size, "crop_size": size,
            "mean": tuple(float(v) for v in config.get("mean", (0.48145466, 0.4578275,
                                                                  0.40821073))),
            "std": tuple(float(v) for v in config.get("std", (0.26862954, 0.26130258,
                                                                0.27577711))),
            "interpolation": _INTERPOLATION.get(config.get("interpolation", "bicubic"),
                                                InterpolationMode.BICUBIC)}


def _groups(tower: ImageTower) -> list[tuple[str, list[str]]]:
    """Layer groups of the image tower, stem first: for open_clip's ViT the patch embedding
    (with the class token and positions), each transformer block, then the final norm
    and projection; for other towers their top-level stages."""
    visual = tower.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if isinstance(blocks, nn.ModuleList) and hasattr(visual, "conv1"):
        owned = dict(visual.named_parameters(recurse=False))
        stem = [f"visual.{n}" for n in ("conv1", "ln_pre") if hasattr(visual, n)] + \
            [f"visual.{n}" for n in ("class_embedding", "positional_embedding") if n in owned]
        head = [f"visual.{n}" for n in ("ln_post",) if hasattr(visual, n)] + \
            [f"visual.{n}" for n in ("proj",) if n in owned and owned[n] is not None]
        return [("stem", stem)] + [(f"block{i}", [f"visual.transformer.resblocks.{i}"])
                                   for i in range(len(blocks))] + [("head", head)]
    return [(name, [f"visual.{m}" for m in members])
            for name, members in _generic_groups(visual)]
