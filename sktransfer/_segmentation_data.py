"""Images with their masks, kept aligned through augmentation and resizing.

The network sees every image resized to a ``size`` x ``size`` square (aspect ratio not
kept, nothing cropped away); its mask is resized with nearest-neighbour sampling, so
labels are never interpolated. Augmentation uses torchvision's ``transforms.v2``, which
moves image and mask together (same crop, same flip) and never interpolates a
:class:`~torchvision.tv_tensors.Mask`; the default augmentation crops both and leaves
the resizing to this module, so label pixels stay centred on their image pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from ._masks import MaskSource
from .images import ImageSource, image_tensor


class JointRandomCrop:
    """The same random crop of image and mask: an area of ``scale`` times the image's, of
    aspect ratio in ``ratio`` (``RandomResizedCrop``'s draw). The dataset then resizes
    both to the network's size, which keeps pixel centres aligned (torchvision's v2
    resizes masks with ``NEAREST``, which shifts them by up to half a pixel)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.scale, self.ratio = scale, ratio

    def __call__(self, image: torch.Tensor, mask: torch.Tensor):
        top, left, height, width = T.RandomResizedCrop.get_params(image, list(self.scale),
                                                                  list(self.ratio))
        return (TF.crop(image, top, left, height, width),
                TF.crop(mask, top, left, height, width))


def default_joint_augmentation(size: int) -> T.Compose:
    """Random resized crop of image and mask together, horizontal flip, colour jitter
    (image only). ``size`` is the network's input size (resizing follows in the
    dataset)."""
    return T.Compose([
        JointRandomCrop(scale=(0.5, 1.0)),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.2, 0.2, 0.2),
    ])


def resize_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """A ``(3, H, W)`` image resized to ``(3, size, size)`` (bilinear, antialiased)."""
    if img.shape[-2:] == (size, size):
        return img
    if img.dtype == torch.uint8 and 1 in img.shape[-2:]:
        img = img.clone(memory_format=torch.contiguous_format)  # see Preprocessing
    return TF.resize(img, [size, size], interpolation=InterpolationMode.BILINEAR,
                     antialias=True)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """An ``(H, W)`` label mask resized to ``(size, size)`` by nearest neighbour, pixel
    centres aligned with :func:`resize_image`'s (``NEAREST_EXACT``)."""
    if mask.shape[-2:] == (size, size):
        return mask
    return TF.resize(mask[None], [size, size],
                     interpolation=InterpolationMode.NEAREST_EXACT)[0]


class SegmentationDataset(Dataset):
    """Items ``(image, {"y": mask, "w": weight})`` at the network's size, or
    ``(image, 0)`` without masks (prediction).

    Parameters
    ----------
    source : ImageSource
        The images.
    size : int
        Side of the square the network sees.
    masks : MaskSource, default=None
        One label mask per image, at the image's size.
    indices : sequence of int, default=None
        The items of ``source`` to use (all by default).
    augment : callable, default=None
        A ``transforms.v2`` transform called as ``augment(image, mask)`` with a
        ``tv_tensors.Image`` and a ``tv_tensors.Mask``; it returns both.
    weights : array-like, default=None
        Per-image weights in the loss.
    """

    def __init__(self, source: ImageSource, size: int, masks: MaskSource | None = None,
                 indices=None, augment=None, weights=None):
        self.source, self.size, self.masks = source, int(size), masks
        self.augment, self.weights = augment, weights
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        img = image_tensor(self.source.read(index))
        if self.masks is None:
            return resize_image(img, self.size), 0
        mask = torch.from_numpy(np.asarray(self.masks.read(index), dtype=np.int64))
        if mask.shape != img.shape[-2:]:  # checked in fit; files may change meanwhile
            raise ValueError(f"y[{index}] is {tuple(mask.shape)} but X[{index}] is "
                             f"{tuple(img.shape[-2:])}; a mask labels each pixel of its image")
        if self.augment is not None:
            img, mask = self.augment(tv_tensors.Image(img), tv_tensors.Mask(mask))
            img, mask = img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        weight = 1.0 if self.weights is None else float(self.weights[index])
        return resize_image(img, self.size), {
            "y": resize_mask(mask, self.size), "w": torch.tensor(weight, dtype=torch.float32)}
