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
import warnings
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
_HUB_FILES = tuple(f for f in _hub.WEIGHT_FILES if f.startswith("open_clip"))


def accepts(spec: object) -> bool:
    """Whether ``spec`` names an open_clip model."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


class ImageTower(nn.Module):
    """The image side of a vision-language model: images to unit-length embeddings."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        if isinstance(out, (tuple, list)):  # CoCa: (pooled embedding, tokens)
            out = out[0]
        return F.normalize(out.float(), dim=-1)


class TextTower(nn.Module):
    """The text side: a list of strings to unit-length embeddings in the images' space.

    ``logit_scale`` is the model's temperature (``exp`` of its learned parameter): the
    scale by which it multiplies image-text cosines into logits.
    """

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name  # the tokenizer's, built on first use
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.context_length = int(getattr(model, "context_length", 77))

    @property
    def device(self) -> torch.device:
        """Where the text weights are (the image tower may be elsewhere)."""
        text = getattr(self.model, "token_embedding", None) or getattr(self.model, "text",
                                                                        None)
        return next((text or self.model).parameters()).device

    def text_modules(self) -> list[nn.Module]:
        """The model's modules and parameters outside the image tower, to move them."""
        return [m for name, m in self.model.named_children() if name != "visual"]

    def to_device(self, device: torch.device | str) -> TextTower:
        """Move the text side only (the image tower is shared with the backbone's body)."""
        for module in self.text_modules():
            module.to(device)
        for param in self.model.parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buffer in self.model.named_buffers(recurse=False):
            setattr(self.model, name, buffer.to(device))
        return self

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.encode(_tokenizer(self.name)(list(texts)).to(self.device))

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
        weights_id = None
    elif looks_like_path(weights):
        if not Path(weights).is_file():
            raise FileNotFoundError(f"Weights file not found: {weights}")
        weights_id = file_id(weights)
    elif isinstance(weights, str) and weights == "DEFAULT":
        weights_id = f"open_clip:{name}/{tag}" if tag else f"open_clip:{name}"
        if name.startswith("local-dir:"):  # the folder's weights: identified by their file
            weights_id = _folder_weights_id(name)
    else:
        raise ValueError(f"weights={weights!r} for an open_clip model: use 'DEFAULT' (the "
                         "spec's pretrained tag or the folder's weights), None (random) or a "
                         "local open_clip state-dict file (.pt, .bin, .safetensors)")
    key = None if weights is None else (name, weights_id, image_size)  # random: not kept
    hit = _memo.recall(key, share_weights) if key is not None else None
    if hit is not None:
        model = hit[0]
    else:
        model = _create(open_clip, name, tag, weights, options)
        model.eval()
        if key is not None:
            _memo.remember(key, model, {})
    tower = ImageTower(model.visual)
    return Built(tower, spec, _preprocessing(model.visual), weights_id, _groups(tower),
                 text=TextTower(model, name))


def _folder_weights_id(name: str) -> str:
    """The identity of the weights file open_clip loads from a ``local-dir:`` folder (its
    path, size and time), chosen by open_clip's own rule."""
    from open_clip.factory import _find_checkpoint_in_dir

    folder = Path(name.removeprefix("local-dir:"))
    found = _find_checkpoint_in_dir(folder)
    return file_id(found) if found else f"open_clip:{folder.resolve()}"


def _create(open_clip, name: str, tag: str | None, weights: object,
            options: dict) -> nn.Module:
    """``open_clip.create_model`` with the weights asked for; offline and uncached, a
    :class:`WeightsUnavailableError` at once (no hub retries)."""
    plain = {"pretrained_image": False, "pretrained_text": False, **options}
    if weights is None or weights != "DEFAULT":  # random, or a local file loaded below
        with _quiet_random_init():
            model = open_clip.create_model(name, pretrained=None, load_weights=False, **plain)
        if weights is not None:  # open_clip's own reader: safetensors, or weights_only
            open_clip.load_checkpoint(model, str(weights), weights_only=True)
        return model
    if name.startswith("local-dir:"):  # the folder's own weights
        return open_clip.create_model(name, **plain)
    if tag is None and not name.startswith("hf-hub:"):
        raise ValueError(f"'open_clip:{name}' names no pretrained weights: write "
                         f"'open_clip:{name}/<tag>' with a tag of "
                         f"{open_clip.list_pretrained_tags_by_model(name)}, or pass "
                         "weights=None or a local weights file")
    config = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    if tag and not config:
        raise ValueError(f"Unknown pretrained tag {tag!r} for open_clip model {name!r}; "
                         f"its tags are {open_clip.list_pretrained_tags_by_model(name)}")
    # a tag's hub repo (None: a URL open_clip downloads itself), or the hf-hub: spec's
    hub_id = (config.get("hf_hub") or "").strip("/") or None if tag else \
        name.removeprefix("hf-hub:")
    try:
        _hub.check_available(hub_id, _HUB_FILES)
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
    ``preprocess_cfg`` (what ``open_clip.create_model_and_transforms`` reads): resize the
    shorter side to the input size, centre crop, the model's mean and std."""
    config = visual.preprocess_cfg
    if config["resize_mode"] != "shortest":
        warnings.warn(f"this open_clip model resizes images with resize_mode="
                      f"{config['resize_mode']!r}; sktransfer resizes the shorter side and "
                      "crops the centre, so non-square images embed slightly differently "
                      "from open_clip's own preprocessing", UserWarning, stacklevel=4)
    size = config["size"]
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return {"resize_size": size, "crop_size": size,
            "mean": tuple(float(v) for v in config["mean"]),
            "std": tuple(float(v) for v in config["std"]),
            "interpolation": InterpolationMode(config["interpolation"])}


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
