"""Grad-CAM heat maps (Selvaraju et al. 2017) of a fitted classifier, on each image's own
pixels: which regions raised the score of a class.

The network explained is a float32 copy of the fitted one (the fine-tuners' ``net_``, or
what ``__sktransfer_deploy__`` describes for a pipeline starting with a feature extractor
and ending in a linear classifier), so the estimator is never touched. Its last
convolutional stage is found with forward hooks on one image: the last module whose
output is ``(N, C, h, w)`` with ``h * w > 1``, or, for a vision transformer, whose output
is a token sequence ``(N, p + s * s, C)`` (``p`` class or register tokens, at most 8) whose
patch tokens receive gradient from the class score, reshaped to an ``s`` x ``s`` grid as
the ``grad-cam`` package's ``reshape_transform`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import _runtime
from ._deployable import Finished, Linear, Mirrored, frozen_copy
from .images import ImageSource, Preprocessing, as_image_source

MAX_PREFIX_TOKENS = 8  # class, distillation and register tokens before the patch tokens


@dataclass
class Explainer:
    """A float32 copy of a classifier's network, from ``[0, 1]`` images to class scores.

    Parameters
    ----------
    network : nn.Module
        Maps a ``(N, 3, crop, crop)`` float batch in ``[0, 1]`` to ``(N, n_classes)``
        scores before the softmax (logits; a linear classifier's decision values).
    preprocessing : Preprocessing
        The fitted resize and centre crop.
    classes : ndarray
        Labels, in the order of the scores' columns.
    device : torch.device
        Where the estimator computes.
    batch_size : int
        Images per forward and backward pass.
    """

    network: nn.Module
    preprocessing: Preprocessing
    classes: np.ndarray
    device: torch.device
    batch_size: int = 32

    def maps(self, X: object, target: object = None) -> list[np.ndarray]:
        """Heat maps of ``X`` for ``target`` (see :func:`sktransfer.inspect.explain`)."""
        source = as_image_source(X)
        targets = self._targets(target, len(source))
        network = self.network.to(self.device).float().eval()
        out: list[np.ndarray] = []
        layer = None
        with torch.inference_mode(False), torch.enable_grad(), \
                torch.autocast(self.device.type, enabled=False):
            for start in range(0, len(source), self.batch_size):
                stop = min(start + self.batch_size, len(source))
                batch, sizes = self._batch(source, start, stop)
                if layer is None:
                    layer = find_layer(network, batch[:1])
                cams = self._cams(network, layer, batch,
                                  None if targets is None else targets[start:stop])
                out.extend(to_original(cam, self.preprocessing, size)
                           for cam, size in zip(cams, sizes, strict=True))
        return out

    def _targets(self, target: object, n: int) -> np.ndarray | None:
        """Column index of each image's class; None: each image's highest score."""
        if target is None:
            return None
        values = np.asarray(target, dtype=object)
        if values.ndim == 0:
            values = np.full(n, values.item(), dtype=object)
        elif values.ndim != 1 or len(values) != n:
            raise ValueError(f"target must be one label or one label per image ({n}); got "
                             f"shape {values.shape}")
        lookup = {_key(label): i for i, label in enumerate(self.classes.tolist())}
        unknown = [v for v in dict.fromkeys(values.tolist()) if _key(v) not in lookup]
        if unknown:
            raise ValueError(f"target holds labels the estimator does not know: "
                             f"{unknown[:5]}; its classes are {self.classes.tolist()}")
        return np.asarray([lookup[_key(v)] for v in values.tolist()])

    def _batch(self, source: ImageSource, start: int,
               stop: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        images, sizes = [], []
        for i in range(start, stop):
            img = source.read(i)
            sizes.append(tuple(img.shape[-2:]) if isinstance(img, torch.Tensor)
                         else (img.height, img.width))
            tensor = self.preprocessing.prepare(img)
            images.append(tensor.float() / 255 if tensor.dtype == torch.uint8 else
                          tensor.float())
        return torch.stack(images).to(self.device), sizes

    def _cams(self, network: nn.Module, layer: Layer, batch: torch.Tensor,
              targets: np.ndarray | None) -> torch.Tensor:
        """``(N, h, w)`` maps at the layer's resolution: ReLU of the channels weighted by
        their spatially averaged gradients."""
        captured = {}

        def hook(_module, _inputs, output):
            leaf = output.detach().requires_grad_(True)  # gradients start here, not below
            captured["a"] = leaf
            return leaf.clone()  # later in-place operations must not touch the leaf

        handle = layer.module.register_forward_hook(hook)
        try:
            scores = network(batch)
        finally:
            handle.remove()
        columns = scores.argmax(1) if targets is None else torch.as_tensor(
            targets, device=scores.device)
        picked = scores.gather(1, columns[:, None]).sum()
        activations = captured["a"]
        (grads,) = torch.autograd.grad(picked, activations)
        activations, grads = layer.grid(activations.detach()), layer.grid(grads)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return F.relu((weights * activations).sum(dim=1)).detach().cpu()


def _key(label: object) -> object:
    """A label as a dict key: NumPy scalars as Python ones."""
    return label.item() if isinstance(label, np.generic) else label


# --------------------------------------------------------------------------- the layer
@dataclass
class Layer:
    """The module explained, and how its output becomes ``(N, C, h, w)`` maps."""

    module: nn.Module
    name: str
    prefix: int | None = None  # None: maps already; else tokens before the patch tokens

    def grid(self, output: torch.Tensor) -> torch.Tensor:
        if self.prefix is None:
            return output
        patches = output[:, self.prefix:]
        side = math.isqrt(patches.shape[1])
        return patches.reshape(len(patches), side, side, -1).permute(0, 3, 1, 2)


def _token_prefix(output: object) -> int | None:
    """Tokens before a square grid of patch tokens in ``(N, T, C)``; None if not tokens."""
    if not isinstance(output, torch.Tensor) or output.ndim != 3:
        return None
    side = math.isqrt(output.shape[1])
    if side >= 2 and output.shape[1] - side * side <= MAX_PREFIX_TOKENS:
        return output.shape[1] - side * side
    return None


def find_layer(network: nn.Module, image: torch.Tensor) -> Layer:
    """The last module whose output is a map (or patch tokens that the score depends on).

    One forward and backward pass of ``image`` (``(1, 3, crop, crop)``) with hooks on
    every module, recording outputs in the order they are computed.
    """
    names = {}
    for name, module in network.named_modules():
        names.setdefault(module, name)
    seen: list[tuple[nn.Module, torch.Tensor, int | None]] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and \
                output.shape[2] * output.shape[3] > 1:
            seen.append((module, output, None))
        elif (prefix := _token_prefix(output)) is not None and output.requires_grad:
            output.retain_grad()
            seen.append((module, output, prefix))

    handles = [m.register_forward_hook(record) for m in names if m is not network]
    image = image.clone().requires_grad_(True)  # the network's parameters are frozen
    try:
        scores = network(image)
    finally:
        for handle in handles:
            handle.remove()
    if any(prefix is not None for _, _, prefix in seen):
        scores[0, scores[0].argmax()].backward()
    for module, output, prefix in reversed(seen):
        if prefix is None:
            return Layer(module, names[module])
        if output.grad is not None and bool(output.grad[:, prefix:].abs().sum() > 0):
            return Layer(module, names[module], prefix)
    raise ValueError(
        f"explain found no convolutional feature map (a module output of shape (N, C, h, w) "
        f"with h * w > 1) nor patch tokens the prediction depends on in this "
        f"{type(network).__name__}; Grad-CAM needs one (at a {image.shape[-1]}-pixel "
        f"input)")


# --------------------------------------------------------------------------- geometry
def to_original(cam: torch.Tensor, prep: Preprocessing, size: tuple[int, int]) -> np.ndarray:
    """Map an ``(h, w)`` map of the crop back onto the ``(H, W)`` image it came from.

    Undoes :meth:`~sktransfer.images.Preprocessing.resize_crop`: each original pixel's
    centre is taken through the resize (shorter side to ``resize_size``, torchvision's
    rounding) into the centred crop, where the map (spanning the crop) is sampled
    bilinearly; pixels outside the crop are 0. The result is divided by its maximum (all
    zeros stays all zeros).
    """
    height, width = size
    crop = prep.crop_size
    resized_h, resized_w = resized_size(height, width, prep.resize_size)
    top, left = crop_anchor(resized_h, crop), crop_anchor(resized_w, crop)
    # crop coordinates (pixel-edge units) of the original pixels' centres
    rows = (torch.arange(height, dtype=torch.float32) + 0.5) * (resized_h / height) - top
    cols = (torch.arange(width, dtype=torch.float32) + 0.5) * (resized_w / width) - left
    inside = ((rows >= 0) & (rows < crop))[:, None] & ((cols >= 0) & (cols < crop))[None, :]
    grid = torch.stack(torch.meshgrid(2 * cols / crop - 1, 2 * rows / crop - 1, indexing="xy"),
                       dim=-1)
    sampled = F.grid_sample(cam[None, None].float(), grid[None], mode="bilinear",
                            padding_mode="border", align_corners=False)[0, 0]
    sampled = sampled * inside
    peak = sampled.max()
    if peak > 0:
        sampled = sampled / peak
    return sampled.clamp_(0, 1).numpy().astype(np.float32)


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(H, W)`` after resizing the shorter side to ``short`` (torchvision's rule)."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_anchor(length: int, crop: int) -> int:
    """Where the centred crop starts along one side (negative: the side is padded)."""
    if length >= crop:
        return round((length - crop) / 2.0)
    return -((crop - length) // 2)


# --------------------------------------------------------------------------- estimators
def explainer(estimator: object) -> Explainer:
    """The :class:`Explainer` of a fitted classifier or pipeline.

    Raises
    ------
    TypeError
        For an estimator whose network and class scores it cannot reach, naming it.
    """
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    estimator = _chosen(estimator)
    if isinstance(estimator, Pipeline):
        return _pipeline(estimator)
    if not (is_classifier(estimator) and hasattr(estimator, "__sktransfer_deploy__")):
        raise TypeError(
            f"explain takes a fitted sktransfer classifier (FineTuneClassifier, "
            f"DomainAdaptationClassifier, ZeroShotClassifier) or a Pipeline of a "
            f"PretrainedFeatureExtractor and a linear classifier; got "
            f"{type(estimator).__name__}")
    batch_size = int(getattr(estimator, "batch_size", 32))
    if hasattr(estimator, "net_") or not hasattr(estimator, "backbone_"):
        check_is_fitted(estimator, "net_")
        # where predict runs: skorch maps a GPU-fitted net to the CPU where CUDA is absent
        device = torch.device(estimator.net_.device)
        # the fine-tuners: their network's logits (test-time augmentation is not applied)
        return Explainer(frozen_copy(estimator.net_.module_), estimator.preprocessing_,
                         np.asarray(estimator.classes_), device, batch_size)
    device = _runtime.resolve_device(getattr(estimator, "device", "auto"))
    deployable = estimator.__sktransfer_deploy__()
    return Explainer(_logits(deployable.network), deployable.preprocessing,
                     np.asarray(deployable.classes), device, batch_size)


def _chosen(estimator: object) -> object:
    """A fitted search's ``best_estimator_``, else ``estimator``."""
    while hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    return estimator


def _logits(network: nn.Module) -> nn.Module:
    """The scores before the output function of a deployed classifier (a fresh copy)."""
    while True:
        if isinstance(network, Mirrored):
            network = network.network
        elif isinstance(network, Finished):
            network = network.network
        elif isinstance(network, Linear) and network.finish is not None:
            network.finish = None  # a copy made for this call
            return network
        else:
            return network


def _pipeline(pipe: object) -> Explainer:
    """A pipeline of a feature extractor, scalers, and a linear classifier, as one network."""
    from sklearn.preprocessing import StandardScaler

    from ._extractor import PretrainedFeatureExtractor

    steps = [(name, step) for name, step in pipe.steps
             if step is not None and step != "passthrough"]
    if not steps or not isinstance(steps[0][1], PretrainedFeatureExtractor):
        first = type(steps[0][1]).__name__ if steps else "nothing"
        raise TypeError(f"explain takes a Pipeline whose first step is a "
                        f"PretrainedFeatureExtractor; its first step is a {first}")
    name, final = steps[-1]
    if len(steps) < 2 or not (hasattr(final, "coef_") and hasattr(final, "intercept_")
                              and hasattr(final, "classes_")):
        raise TypeError(f"explain needs the pipeline to end in a fitted linear classifier "
                        f"(coef_, intercept_ and classes_: LogisticRegression, "
                        f"LinearSVC, RidgeClassifier, SGDClassifier...); its last step "
                        f"{name!r} is a {type(final).__name__}")
    classes = np.asarray(final.classes_)
    coef = np.asarray(final.coef_, dtype=np.float64)
    intercept = np.broadcast_to(np.asarray(final.intercept_, dtype=np.float64),
                                (coef.shape[0],))
    if coef.shape[0] == 1 and len(classes) == 2:  # one decision value: class 1 vs class 0
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    for step_name, step in reversed(steps[1:-1]):  # fold scalers into the linear map
        if not isinstance(step, StandardScaler):
            raise TypeError(f"explain folds StandardScaler steps into the linear "
                            f"classifier; pipeline step {step_name!r} is a "
                            f"{type(step).__name__}")
        scale = np.ones(coef.shape[1]) if step.scale_ is None else np.asarray(step.scale_)
        mean = np.zeros(coef.shape[1]) if step.mean_ is None else np.asarray(step.mean_)
        coef = coef / scale
        intercept = intercept - coef @ mean
    extractor = steps[0][1]
    deployable = PretrainedFeatureExtractor.__sktransfer_deploy__(extractor)
    network = Linear(deployable.network, coef, 1.0, intercept)
    device = _runtime.resolve_device(extractor.device)
    return Explainer(network, deployable.preprocessing, classes, device,
                     int(extractor.batch_size))


def explain(estimator: object, X: object, *, target: object = None) -> list[np.ndarray]:
    """Show where a fitted classifier looked: Grad-CAM heat maps on the images' pixels.

    Grad-CAM (Selvaraju et al., 2017) weighs each channel of the network's last
    convolutional stage by the average gradient of a class's score over it, sums them and
    keeps the positive part: the regions whose features raised that class's score. The
    stage is the last module whose output is a feature map ``(N, C, h, w)`` with
    ``h * w > 1``. For a vision transformer (no such map after its patch embedding),
    the last token sequence ``(N, p + s * s, C)`` whose patch tokens the score depends on
    is reshaped to an ``s`` x ``s`` grid (the class and other ``p <= 8`` leading tokens
    dropped), as the ``grad-cam`` package's ``reshape_transform``.

    Each map is computed on the image as the estimator sees it (resized, centre crop),
    then mapped back onto the image's original pixels: pixels outside the crop are 0.
    The computation runs in float32 with gradients on a copy of the fitted network, on
    the estimator's device; the estimator is not changed. Test-time augmentation
    (``tta``) is not applied: the map is that of the centre crop.

    Parameters
    ----------
    estimator : classifier
        Fitted: a :class:`~sktransfer.FineTuneClassifier` or
        :class:`~sktransfer.DomainAdaptationClassifier` (the scores are its logits), a
        :class:`~sktransfer.ZeroShotClassifier`, or a
        :class:`~sklearn.pipeline.Pipeline` of a
        :class:`~sktransfer.PretrainedFeatureExtractor`, any
        :class:`~sklearn.preprocessing.StandardScaler` steps and a linear classifier
        with ``coef_`` and ``intercept_`` (``LogisticRegression``, ``LinearSVC``,
        ``RidgeClassifier``...; the scores are its decision function). A fitted search
        (``GridSearchCV``...) explains its ``best_estimator_``.
    X : images
        File paths, arrays, PIL images... (see
        :func:`sktransfer.images.as_image_source`); sizes may differ.
    target : label, array-like of shape (n_samples,) or None, default=None
        The class to explain: one label for every image, or one per image; ``None``
        explains each image's predicted class (highest score).

    Returns
    -------
    maps : list of ndarray
        One float32 array per image, of that image's ``(height, width)`` (a list even
        when all sizes agree), each divided by its maximum: values in ``[0, 1]``, 1
        where the evidence for the class is strongest, all zeros when nothing in the
        image supports it.

    Raises
    ------
    TypeError
        For an estimator it cannot explain, naming its type (another estimator, a
        pipeline not starting with a feature extractor or not ending in a linear
        classifier, or with steps between other than StandardScaler).
    ValueError
        If ``target`` holds labels the estimator does not know, or the network has no
        feature map to explain.

    See Also
    --------
    sktransfer.inspect.plot_top_losses : The worst images with their maps overlaid.

    References
    ----------
    .. [1] R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra,
       "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
       Localization", ICCV 2017.
    """
    return explainer(estimator).maps(X, target)


__all__: list[str] = []
