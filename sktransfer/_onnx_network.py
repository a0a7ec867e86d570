"""The network part of an ONNX export: a :class:`~sktransfer._deployable.Deployable` traced
by torch's dynamo exporter into a graph from uint8 ``(N, H, W, 3)`` images to its output.

Why the dynamo exporter (``torch.onnx.export(..., dynamo=True)``): it is torch's supported
exporter from 2.9 on (the TorchScript one warns that it will be removed), and it gives a
correct graph for every backbone family here (torchvision and timm CNNs, ConvNeXt, ViT,
EfficientNet-Lite, open_clip towers, torchvision segmentation models, the FCN decoder with
its forward hooks), checked against the estimators by ``tests/test_onnx.py``. It traces
in 2-6 s per model where the TorchScript exporter takes under one; correctness won.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from ._deployable import Deployable

# the name of the network's output for each task (segmentation scores are finished later)
OUTPUT = {"transform": "embeddings", "classifier": "probabilities",
          "multilabel": "probabilities", "regressor": "predictions", "segmenter": "scores"}


class ChannelsLast(nn.Module):
    """Take ``(N, H, W, 3)`` uint8 images, as decoders and apps hold them."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images.permute(0, 3, 1, 2))


def export_network(deployable: Deployable, opset: int, name: str):
    """The ONNX model of ``deployable``: input ``images`` (uint8, ``(N, S, S, 3)`` with
    ``S`` the crop size, any ``N``), one output named by :data:`OUTPUT`.

    Parameters
    ----------
    deployable : Deployable
        What to export.
    opset : int
        The ONNX opset of the graph.
    name : str
        The estimator's name, for error messages.

    Returns
    -------
    onnx.ModelProto
    """
    size = deployable.preprocessing.crop_size
    wrapper = ChannelsLast(deployable.network).eval()
    # two different images: a batch of 1 or of equal images lets the tracer specialise
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    output = OUTPUT[deployable.task]
    try:
        # the exporter reports its steps on stdout and warns about its own internals
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
                torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, input_names=["images"],
                output_names=[output], dynamic_shapes=({0: batch},), opset_version=opset,
                optimize=True, verbose=False, report=False)
    except Exception as exc:  # the exporter's errors are many and version-specific
        raise RuntimeError(
            f"torch.onnx.export could not trace the network of this {name} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "export_model (safetensors) or joblib keep it usable from Python") from exc
    return program.model_proto


__all__: list[str] = []
