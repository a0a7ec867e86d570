"""FineTuneSegmenter: semantic segmentation by fine-tuning a pretrained backbone (FCN)."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from . import _losses, _runtime
from ._dask import is_dask_collection
from ._deployable import Deployable, Mirrored, frozen_copy
from ._fcn import (
    SKIP_SCALES,
    FCNHead,
    FeatureTaps,
    SegmentationNet,
    TorchvisionDecoder,
    choose_taps,
)
from ._finetune_base import BaseFineTuner, example_weights
from ._finetune_docs import fill_docstring
from ._iou import mean_iou_score
from ._masks import MaskSource, as_mask_source, scan_masks
from ._moved import moved
from ._segmentation_data import SegmentationDataset, default_joint_augmentation
from ._validation import Count, StrOptions, check_param
from .backbones import DEFAULT_MODEL, Backbone
from .images import Preprocessing, as_image_source

_AUGMENT = """augment : bool or callable, default=False
        Training-time augmentation of image and mask together: ``True`` for a random
        resized crop (nearest-neighbour for the mask), a horizontal flip and colour
        jitter (image only); or a ``torchvision.transforms.v2`` transform, called as
        ``augment(image, mask)`` with a ``tv_tensors.Image`` and a ``tv_tensors.Mask``
        and returning both (v2 transforms move them together and never interpolate a
        mask). Never applied at prediction."""
_TTA = """tta : bool, default=False
        Test-time augmentation at prediction: ``True`` averages the class scores of the
        image and of its mirror image (mirrored back). Costs 2 forward passes."""
_IMAGE_SIZE = """image_size, resize_size, mean, std : optional
        Preprocessing overrides, as for :class:`PretrainedFeatureExtractor`. The network
        sees each image resized to ``image_size`` x ``image_size`` (aspect ratio not
        kept, nothing cropped away; default: the weights' crop size, 224 for ImageNet
        backbones, 520 for torchvision's segmentation models); ``resize_size`` is not
        used."""
_MODEL = """model : str or torch.nn.Module, default="efficientnet_b0"
        Backbone: any convolutional backbone :class:`PretrainedFeatureExtractor` takes
        (an FCN is built on it), or one of torchvision's segmentation models by name
        (``"fcn_resnet50"``, ``"fcn_resnet101"``, ``"deeplabv3_resnet50"``,
        ``"deeplabv3_resnet101"``, ``"deeplabv3_mobilenet_v3_large"``,
        ``"lraspp_mobilenet_v3_large"``), whose pretrained decoder is kept and whose
        final convolutions are replaced."""
_WEIGHTS = """weights : str, path or None, default="DEFAULT"
        Backbone weights, as for :class:`PretrainedFeatureExtractor`; for a segmentation
        model, its weights (``"DEFAULT"``: COCO with the PASCAL VOC classes), ``None``
        or a local state-dict file."""


def softmax_pixels(out: torch.Tensor) -> torch.Tensor:
    """Per-pixel class probabilities of ``(N, C, H, W)`` scores."""
    return torch.softmax(out.float(), dim=1)


@fill_docstring(parameters={"model": _MODEL, "weights": _WEIGHTS, "augment": _AUGMENT,
                            "tta": _TTA, "image_size, resize_size, mean, std": _IMAGE_SIZE})
class FineTuneSegmenter(BaseFineTuner):
    """Fine-tune a pretrained backbone as a fully convolutional segmenter (FCN).

    ``y`` holds one integer label mask per image: ``(H, W)`` arrays of class indices
    (an ``(n, H, W)`` array, or a list whose masks have their images' sizes) or the paths
    of single-channel label images (PNG mode ``L`` or ``P``); pixels labelled
    ``ignore_index`` count nowhere. On a classification backbone, the network is the
    FCN of Long et al. (2015): a 1x1 classifier on the stride-32 features and, with
    ``skip``, on the stride-16 and stride-8 features (FCN-16s/8s), summed after bilinear
    upsampling and upsampled to the input size. ``unfreeze``, ``lr_decay``, the
    two-phase schedule, BatchNorm modes, early stopping, checkpoints, export and joblib
    behave as for :class:`FineTuneClassifier` (the decoder is the "head").

    ``predict`` returns one mask per image at the image's own size (class scores are
    upsampled bilinearly, labels never are); ``predict_proba`` the per-pixel class
    probabilities, which take ``4 * H * W * n_classes`` bytes per image; ``score`` the
    mean intersection over union (:func:`~sktransfer.mean_iou_score`). Outputs come in
    the container the images came in: an array for an image array, a list otherwise.

    Parameters
    ----------
    %(shared_parameters)s
    skip : bool or {"16s", "8s"}, default=True
        FCN skips: ``False`` scores the coarsest (stride-32) features alone (FCN-32s);
        ``"16s"`` adds the stride-16 features; ``True`` or ``"8s"`` the stride-16 and
        stride-8 ones (FCN-8s). Scales a backbone lacks are left out. Not used by
        torchvision's segmentation models, which have their own decoder.
    n_classes : int, default=None
        Number of classes; default: the largest label in the masks plus one.
    ignore_index : int, default=255
        Mask label of unannotated pixels: no loss, no score.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels ``0..n_classes-1``.
    n_classes_ : int
        Number of classes.
    %(shared_attributes)s

    See Also
    --------
    FineTuneClassifier : One label per image.
    mean_iou_score : The score, as a metric function.

    Notes
    -----
    %(shared_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import FineTuneSegmenter
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    >>> y = (X[..., 0] > 127).astype(np.int64)  # label: a bright red channel
    >>> seg = FineTuneSegmenter("resnet18", weights=None, image_size=32, max_epochs=2,
    ...                         random_state=0).fit(X, y)
    >>> seg.predict(X[:2]).shape
    (2, 32, 32)
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        unfreeze: int | str = 0,
        lr: float | str = 1e-3,
        lr_decay: float | None = None,
        schedule: str = "onecycle",
        batchnorm: str = "frozen",
        freeze_epochs: int = 1,
        max_epochs: int = 10,
        batch_size: int = 32,
        optimizer: str = "adamw",
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.0,
        patience: int = 3,
        augment: bool | object = False,
        tta: bool = False,
        groups: list | dict | None = None,
        image_size: int | None = None,
        resize_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        device: str = "auto",
        precision: str = "auto",
        random_state: int | None = None,
        num_workers: int = 0,
        n_threads: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        callbacks: list | None = None,
        verbose: bool = False,
        adapter: str | None = None,
        adapter_rank: int = 8,
        adapter_alpha: float = 8.0,
        adapter_targets: list | None = None,
        adapter_merge: bool = True,
        skip: bool | str = True,
        n_classes: int | None = None,
        ignore_index: int = 255,
    ):
        self._store_params(locals())

    _segmentation_models = True
    _parameter_constraints: dict = {
        **BaseFineTuner._parameter_constraints,
        "tta": ["boolean"],
        "skip": ["boolean", StrOptions({k for k in SKIP_SCALES if isinstance(k, str)})],
        "n_classes": [Count(2), None],
        "ignore_index": [Integral],
    }

    # ------------------------------------------------------------------ predict
    def predict(self, X: object) -> np.ndarray | list[np.ndarray]:
        """Segment each image: a class label per pixel, at the image's own size.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors, as for
            :func:`sktransfer.images.as_image_source`; sizes may differ.

        Returns
        -------
        masks : ndarray of shape (n_images, H, W) or list of ndarray of shape (H_i, W_i)
            Labels (int64) in ``0..n_classes-1``: an array for an image array, a list
            otherwise.
        """
        return self._segment(X, proba=False)

    def predict_proba(self, X: object) -> np.ndarray | list[np.ndarray]:
        """Per-pixel class probabilities, at each image's own size.

        Parameters
        ----------
        X : images
            As for :meth:`predict`.

        Returns
        -------
        proba : ndarray of shape (n_images, H, W, n_classes) or list of ndarray
            Probabilities (float32) summing to 1 over the last axis;
            ``4 * H * W * n_classes`` bytes per image. An array for an image array, a
            list otherwise.
        """
        return self._segment(X, proba=True)

    def score(self, X: object, y: object) -> float:
        """Mean intersection over union of ``predict(X)`` against the masks ``y``.

        Parameters
        ----------
        X : images
            The images.
        y : masks
            Their true masks (``ignore_index`` pixels count nowhere).

        Returns
        -------
        float
            :func:`~sktransfer.mean_iou_score` over ``n_classes_`` classes.
        """
        pred = self.predict(X)
        return mean_iou_score(y, pred, n_classes=self.n_classes_,
                              ignore_index=self.ignore_index)

    def _segment(self, X: object, proba: bool) -> np.ndarray | list[np.ndarray]:
        check_is_fitted(self, "net_")
        _refuse_dask(X)
        check_param(self, "tta")  # read at predict time: it may have been set after fit
        source = as_image_source(X)
        dataset = SegmentationDataset(source, self.preprocessing_.crop_size)
        net, out, index = self.net_, [], 0
        with self._predicting():
            for batch in net.get_iterator(dataset, training=False):
                scores = net.evaluation_step(batch, training=False)
                if self.tta:
                    images, rest = batch
                    mirrored = net.evaluation_step((images.flip(-1), rest), training=False)
                    scores = (scores + mirrored.flip(-1)) / 2
                sizes = [source.size(i) for i in range(index, index + len(scores))]
                index += len(scores)
                if len(set(sizes)) == 1:  # one call for the batch (arrays: always)
                    out += _finish(scores, sizes[0], proba)
                else:
                    out += [_finish(row[None], size, proba)[0]
                            for row, size in zip(scores, sizes, strict=True)]
        return np.stack(out) if source.is_array else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        return tags

    # ------------------------------------------------------------------ fit pieces
    def _prepare(self, X: object, y: object, sample_weight: object):
        _refuse_dask(X)
        source = as_image_source(X)
        masks = as_mask_source(y, len(source))
        n_classes = scan_masks(masks, source, n_classes=self.n_classes,
                               ignore_index=self.ignore_index)
        info = {"n_classes_": n_classes, "classes_": np.arange(n_classes)}
        weights = example_weights(sample_weight, len(source))
        return source, masks, info, weights

    def _module(self, backbone: Backbone, info: dict, device: torch.device) -> SegmentationNet:
        n_classes = info["n_classes_"]
        if backbone.decoder is not None:
            body, head = backbone.body, TorchvisionDecoder(backbone.decoder, n_classes)
        else:
            net = backbone.body.net
            taps, channels = choose_taps(net, backbone.groups, self.skip, backbone.name,
                                         backbone.preprocessing.crop_size)
            body, head = FeatureTaps(net, taps), FCNHead(channels, n_classes)
        return SegmentationNet(body, head, backbone.preprocessing,
                               channels_last=_runtime.use_channels_last(device),
                               batchnorm=self.batchnorm)

    def _dataset(self, source, prep: Preprocessing, targets=None, indices=None, augment=None,
                 weights=None, views=None, extras=None) -> SegmentationDataset:
        return SegmentationDataset(source, prep.crop_size, targets, indices, augment, weights)

    def _augmentation(self, crop_size: int):
        if self.augment is True:
            return default_joint_augmentation(crop_size)
        return self.augment or None

    def _fingerprint_targets(self, targets: MaskSource) -> list:
        return targets.fingerprint_parts()

    def _n_outputs(self, info: dict) -> int:
        return info["n_classes_"]

    def _loss(self, info: dict) -> _losses.PixelLoss:
        return _losses.PixelLoss(self.ignore_index)

    def _output(self, info: dict):
        return softmax_pixels

    # ------------------------------------------------------------------ deployment
    def __sktransfer_deploy__(self) -> Deployable:
        """The fitted net's class scores at the network's input size (``tta``: the mirror
        average); probabilities and masks at each image's size are taken from them."""
        check_is_fitted(self, "net_")
        check_param(self, "tta")
        network = frozen_copy(self.net_.module_)
        if self.tta:
            network = Mirrored(network, maps=True)
        return Deployable(network, "segmenter", self.preprocessing_, np.arange(self.n_classes_))

    # ------------------------------------------------------------------ exchange
    def _fitted_targets(self) -> dict:
        """Fitted target attributes as JSON (see :mod:`sktransfer.exchange`)."""
        return {"n_classes": int(self.n_classes_)}

    @staticmethod
    def _target_info(fitted: dict) -> dict:
        n_classes = int(fitted["n_classes"])
        return {"n_classes_": n_classes, "classes_": np.arange(n_classes)}


def _finish(scores: torch.Tensor, size: tuple[int, int], proba: bool) -> list[np.ndarray]:
    """Class scores ``(N, C, h, w)`` to masks (or probabilities) at the images' ``size``."""
    scores = scores.float()
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    if proba:
        return list(torch.softmax(scores, 1).permute(0, 2, 3, 1).cpu().numpy())
    return list(scores.argmax(1).cpu().numpy().astype(np.int64))


def _refuse_dask(X: object) -> None:
    if is_dask_collection(X):
        raise TypeError(
            "FineTuneSegmenter does not take Dask collections (each mask has its image's "
            "own size, which a Dask array cannot hold); pass the images in memory or as "
            "paths, e.g. one call per partition with dask.delayed")


# classes that models pickled by earlier versions name at their former path here
__getattr__ = moved(__name__)
