"""Bias correction of int8 weights (Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", sec. 4.2; empirical form), for a QDQ model.

Rounding a convolution's weights to int8 shifts the mean of its outputs by
``E[(W - W_q) x] = (W - W_q) E[x]``; the shift adds up along the network and tilts the
embeddings. With ``E[x]``, the mean input patch of each convolution (per input channel
and kernel offset, padding included) on calibration images in the float32 network, the
shift is subtracted from the convolution's int32 bias. Only bias values change: the graph,
its size and its speed stay those of plain quantisation. Measured on EfficientNet-Lite0
(embeddings + LogisticRegression, two real tasks), it took int8's loss from 5.9 and 1.0
accuracy points to none (``benchmarks/bench_onnx.py``, docs/performance.md).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Calibration images whose mean input patches correct the biases (more change little).
IMAGES = 128


def correct_biases(quantized: onnx.ModelProto, float_model: onnx.ModelProto,
                   batches: list[np.ndarray]) -> int:
    """Correct, in place, the int32 biases of ``quantized``'s int8 convolutions; returns how
    many were corrected. ``float_model`` is the graph that was quantised (same node names);
    ``batches`` its inputs."""
    produced = {out: node for node in quantized.graph.node for out in node.output}
    initializers = {i.name: i for i in quantized.graph.initializer}
    todo = []
    for node in quantized.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        weight, bias = produced.get(node.input[1]), produced.get(node.input[2])
        if all(q is not None and q.op_type == "DequantizeLinear" and q.input[0] in initializers
               for q in (weight, bias)):
            todo.append((node, weight, bias))
    if not todo:
        return 0
    float_nodes = {n.name: n for n in float_model.graph.node}
    float_weights = {i.name: i for i in float_model.graph.initializer}
    means = _mean_patches(float_model, [float_nodes[n.name] for n, _, _ in todo], batches)

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name]).astype(np.float64)

    for node, weight, bias in todo:
        original = numpy_helper.to_array(
            float_weights[float_nodes[node.name].input[1]]).astype(np.float64)
        scale = array(weight.input[1])
        zero = array(weight.input[2]) if len(weight.input) > 2 else np.zeros_like(scale)
        shape = (-1, 1, 1, 1) if scale.size > 1 else ()
        error = original - (array(weight.input[0]) - zero.reshape(shape)) * scale.reshape(shape)
        out_channels, per_group = error.shape[:2]
        mean = means[node.name]  # (in_channels, kh, kw)
        groups = mean.shape[0] // per_group
        shift = np.einsum("gockl,gckl->go",
                          error.reshape(groups, out_channels // groups, per_group,
                                        *error.shape[2:]),
                          mean.reshape(groups, per_group, *mean.shape[1:])).reshape(-1)
        stored = initializers[bias.input[0]]
        values = numpy_helper.to_array(stored).astype(np.int64)
        step = array(bias.input[1]).reshape(-1)
        values = np.clip(values + np.round(shift / step).astype(np.int64),
                         -(2**31) + 1, 2**31 - 1).astype(np.int32)
        stored.CopyFrom(numpy_helper.from_array(values.reshape(stored.dims), stored.name))
    return len(todo)


def _mean_patches(float_model: onnx.ModelProto, convs: list, batches: list[np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """Each convolution's mean input patch ``(in_channels, kh, kw)`` over ``batches``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(float_model)
    inputs = sorted({node.input[0] for node in convs})
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in inputs)
    session = ort.InferenceSession(probe.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    kernels = {i.name: i.dims[2:] for i in float_model.graph.initializer}
    sums: dict[str, np.ndarray] = {}
    count = 0
    for batch in batches:
        found = dict(zip(inputs, session.run(inputs, {"images": batch}), strict=True))
        count += len(batch)
        for node in convs:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            kh, kw = kernels[node.input[1]]
            sh, sw = attrs.get("strides", [1, 1])
            dh, dw = attrs.get("dilations", [1, 1])
            top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
            x = np.pad(found[node.input[0]].astype(np.float64),
                       ((0, 0), (0, 0), (top, bottom), (left, right)))
            rows = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
            cols = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
            patch = np.empty((x.shape[1], kh, kw))
            for u in range(kh):
                for v in range(kw):
                    window = x[:, :, u * dh:u * dh + sh * (rows - 1) + 1:sh,
                               v * dw:v * dw + sw * (cols - 1) + 1:sw]
                    patch[:, u, v] = window.mean((2, 3)).sum(0)
            sums[node.name] = sums.get(node.name, 0) + patch
    return {name: total / count for name, total in sums.items()}


__all__: list[str] = []
