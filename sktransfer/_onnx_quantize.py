"""int8 quantisation of an exported network with onnxruntime's quantisation tools.

Static (``calibration`` images given): weights int8 per output channel, activations uint8
with ranges calibrated on the images (MinMax), in the QDQ format that onnxruntime fuses
into int8 convolutions and matrix products (VNNI and AMX on x86, dot-product instructions
on Arm); the first convolution stays float32, and the biases are corrected for the
weights' rounding (:mod:`sktransfer._onnx_bias`).
Dynamic (no images): weights int8, activation ranges computed per batch at run time;
only matrix products (MatMul, Gemm) are quantised, which is what pays off for
transformers. Networks whose work is mostly convolutions are refused: their convolutions
would stay float32 (onnxruntime's dynamically quantised convolutions, ConvInteger, run
slower than float32), so dynamic quantisation would change next to nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from ._deployable import Deployable
from ._onnx_bias import IMAGES as BIAS_IMAGES
from ._onnx_bias import correct_biases

QUANTIZE = ("int8",)
MIN_CALIBRATION = 8  # fewer images give activation ranges that clip whatever they missed


def check_quantize(quantize: object, calibration: object) -> None:
    """Refuse unknown quantisation requests, and calibration images without one."""
    if quantize is None:
        if calibration is not None:
            raise ValueError("calibration images are only used with quantize='int8'")
        return
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {list(QUANTIZE)} or None, got {quantize!r} "
                         "(onnxruntime's CPU kernels speed up int8, not other types)")


def quantize_network(network: onnx.ModelProto, deployable: Deployable,
                     calibration: object) -> onnx.ModelProto:
    """``network`` (input ``images``) quantised to int8: static with ``calibration``
    images, else dynamic."""
    ops = [node.op_type for node in network.graph.node]
    convs, products = ops.count("Conv"), ops.count("MatMul") + ops.count("Gemm")
    if calibration is None and convs > products:
        raise ValueError(
            f"dynamic int8 quantisation (no calibration images) quantises matrix products "
            f"only, and this network's work is in its {convs} convolutions (against "
            f"{products} matrix products), which would stay float32 (onnxruntime runs "
            "dynamically quantised convolutions, ConvInteger, slower than float32). Pass "
            "calibration=<a few hundred training images> for static quantisation")
    with tempfile.TemporaryDirectory(prefix="sktransfer-quant-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(network, source)
        if calibration is None:
            _dynamic(source, target)
        else:
            _static(source, target, _calibration_batches(deployable, calibration))
        return onnx.load_model(target)


def _dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"],
                     weight_type=QuantType.QInt8, per_channel=True)


def _static(source: Path, target: Path, batches: list[np.ndarray],
            bias_images: int = BIAS_IMAGES) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = source.with_name("prepared.onnx")
    try:  # folds and fuses what it can first (BatchNorm into Conv), as onnxruntime advises
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
    except Exception:  # an optimisation only: quantise the graph as exported
        prepared = source
    graph = onnx.load_model(prepared)
    first_conv = next((n.name for n in graph.graph.node if n.op_type == "Conv"), None)
    quantize_static(prepared, target, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                    # the stem sees the normalised pixels: quantised, it alone took the
                    # embeddings' cosine to float32 from 0.98 to 0.95 (EfficientNet-Lite0)
                    nodes_to_exclude=[first_conv] if first_conv else [],
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    if bias_images:
        quantized = onnx.load_model(target)
        images = np.concatenate(batches)[:bias_images]
        step = len(batches[0])
        if correct_biases(quantized, graph,
                          [images[i:i + step] for i in range(0, len(images), step)]):
            onnx.save_model(quantized, target)


def _calibration_batches(deployable: Deployable, calibration: object,
                         batch_size: int = 32) -> list[np.ndarray]:
    """The calibration images prepared as the graph's input: uint8 ``(n, S, S, 3)``
    batches of one size (the histogram calibrators need equal batches; the last
    incomplete one is dropped when there is a full one), resized as the estimator does
    (a segmenter's: to the square)."""
    from .images import as_image_source, iter_batches

    source = as_image_source(calibration)
    if len(source) < MIN_CALIBRATION:
        raise ValueError(f"static int8 quantisation needs at least {MIN_CALIBRATION} "
                         f"calibration images to measure activation ranges, got {len(source)}")
    prep = deployable.preprocessing
    if deployable.task == "segmenter":
        from ._segmentation_data import SegmentationDataset

        data = SegmentationDataset(source, prep.crop_size)
        images = [as_uint8(data[i][0]) for i in range(len(source))]
        tensors = [torch.stack(images[i:i + batch_size])
                   for i in range(0, len(images), batch_size)]
    else:
        tensors = [batch for _, batch in iter_batches(source, prep, batch_size, n_workers=1)]
    batches = [as_uint8(batch).permute(0, 2, 3, 1).contiguous().numpy() for batch in tensors]
    if len(batches) > 1 and len(batches[-1]) != len(batches[0]):
        batches.pop()
    return batches


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; float images in ``[0, 1]`` rounded to uint8 (the graph's
    input type)."""
    if images.dtype == torch.uint8:
        return images
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


__all__: list[str] = []
