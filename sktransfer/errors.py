"""Errors users can cause; importing this module is cheap (no PyTorch)."""


class ImageInputError(ValueError):
    """An input image cannot be used; the message names the item (index and path)."""


class WeightsUnavailableError(OSError):
    """Pretrained weights are neither cached nor downloadable."""


class FolderError(ValueError):
    """A folder does not have the expected layout; the message names it."""


__all__ = ["FolderError", "ImageInputError", "WeightsUnavailableError"]
