"""Small ONNX graphs written node by node, and the joining of graphs into one model.

- :func:`resize_graph`: images of any size to the network's input, as the library
  prepares them (shorter side to ``resize_size`` then a centre crop; for segmentation, a
  square of the crop size), bilinear with antialiasing, rounded back to uint8;
- :func:`label_graph`: probabilities to labels (argmax and a lookup of the fitted labels,
  or 0/1 per label at 0.5 for multi-label);
- :func:`segmentation_graph`: class scores to probabilities and masks at each image's
  size;
- :func:`join`: one model from two whose outputs feed the other's inputs, every internal
  name of the second prefixed so that nothing collides.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from .images import Preprocessing

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3  # what skl2onnx writes for scikit-learn's models; onnxruntime runs 1-5


def model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    """A model of ``graph`` at ``opset``."""
    ids = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=ids,
                             ir_version=helper.find_min_ir_version_for(ids))


def finish(m: onnx.ModelProto) -> None:
    """Each opset imported once, and the lowest IR version that holds them, so that the
    oldest runtimes that know the opset load the model (in place)."""
    domains: dict[str, int] = {}
    for op in m.opset_import:
        domains[op.domain] = max(domains.get(op.domain, 0), op.version)
    ids = [helper.make_opsetid(d, v) for d, v in domains.items()]
    del m.opset_import[:]
    m.opset_import.extend(ids)
    m.ir_version = helper.find_min_ir_version_for(ids, ignore_unknown=True)  # com.microsoft


# torchvision's interpolation -> ONNX Resize's mode; antialiased bicubic is Pillow's
# (a = -0.5), which torchvision's antialiased tensor resize follows
_RESIZE_MODES = {"bilinear": ("linear", {}), "bicubic": ("cubic", {"cubic_coeff_a": -0.5})}


def _const(name: str, value: object, dtype=None) -> onnx.NodeProto:
    array = np.asarray(value, dtype=dtype)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _images_input(height: int | str, width: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("images", TensorProto.UINT8,
                                         ["N", height, width, 3])


def resize_graph(prep: Preprocessing, square: bool, opset: int) -> onnx.ModelProto:
    """Images ``(N, H, W, 3)`` uint8 of any size to ``resized`` ``(N, S, S, 3)`` uint8.

    ``square=False``: the shorter side becomes ``prep.resize_size`` (the longer one
    ``floor(resize_size * long / short)``, as torchvision computes it), then the centre
    ``S`` x ``S`` crop (``S = prep.crop_size``, offsets rounded half to even as
    torchvision's). ``square=True`` (segmentation): straight to ``S`` x ``S``, and the
    images' ``(H, W)`` go out as ``image_size`` for the masks. Resizing is bilinear (or
    bicubic, as ``prep`` says) with antialiasing, taps outside the image weighted 0 as in
    Pillow and torchvision, and rounds to uint8 like torchvision's uint8 resize.
    """
    S = prep.crop_size
    method = "bilinear" if square else prep.interpolation.value  # masks' images: bilinear
    if method not in _RESIZE_MODES:
        raise ValueError(f"resize=True resizes with {sorted(_RESIZE_MODES)}; this model's "
                         f"preprocessing resizes with {method!r}: export with resize=False "
                         "and resize in the app")
    mode, options = _RESIZE_MODES[method]
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["images"], ["n"], end=1),
        helper.make_node("Shape", ["images"], ["hw"], start=1, end=3),
        _const("three", [3], np.int64),
        helper.make_node("Concat", ["n", "three"], ["n3"], axis=0),
    ]
    outputs = [helper.make_tensor_value_info("resized", TensorProto.UINT8, ["N", S, S, 3])]
    if square:
        nodes += [_const("target", [S, S], np.int64),
                  helper.make_node("Identity", ["hw"], ["image_size"])]
        outputs.append(helper.make_tensor_value_info("image_size", TensorProto.INT64, [2]))
    else:
        nodes += [
            helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.DOUBLE),
            helper.make_node("ReduceMin", ["hw_f"], ["short"], keepdims=1),
            _const("resize", [float(prep.resize_size)], np.float64),
            helper.make_node("Mul", ["hw_f", "resize"], ["scaled"]),
            helper.make_node("Div", ["scaled", "short"], ["ratio"]),
            helper.make_node("Floor", ["ratio"], ["floored"]),
            helper.make_node("Cast", ["floored"], ["target"], to=TensorProto.INT64),
        ]
    nodes += [
        helper.make_node("Concat", ["n3", "target"], ["sizes"], axis=0),
        helper.make_node("Resize", ["pixels", "", "", "sizes"], ["resampled"],
                         mode=mode, antialias=1, exclude_outside=1,
                         coordinate_transformation_mode="pytorch_half_pixel", **options),
        helper.make_node("Round", ["resampled"], ["rounded"]),
        _const("lo", 0.0, np.float32), _const("hi", 255.0, np.float32),
        helper.make_node("Clip", ["rounded", "lo", "hi"], ["clipped"]),
        helper.make_node("Cast", ["clipped"], ["resized_u8"], to=TensorProto.UINT8),
    ]
    if square:
        cropped = "resized_u8"
    else:
        nodes += [
            _const("crop", [S, S], np.int64),
            helper.make_node("Sub", ["target", "crop"], ["spare"]),
            helper.make_node("Cast", ["spare"], ["spare_f"], to=TensorProto.FLOAT),
            _const("half", [0.5, 0.5], np.float32),
            helper.make_node("Mul", ["spare_f", "half"], ["offset_f"]),
            helper.make_node("Round", ["offset_f"], ["offset_r"]),  # half to even
            helper.make_node("Cast", ["offset_r"], ["start"], to=TensorProto.INT64),
            helper.make_node("Add", ["start", "crop"], ["end"]),
            _const("axes", [2, 3], np.int64),
            helper.make_node("Slice", ["resized_u8", "start", "end", "axes"], ["cropped"]),
        ]
        cropped = "cropped"
    nodes.append(helper.make_node("Transpose", [cropped], ["resized"], perm=[0, 2, 3, 1]))
    graph = helper.make_graph(nodes, "sktransfer_resize", [_images_input("H", "W")], outputs)
    return model(graph, opset)


def label_graph(classes: np.ndarray, multilabel: bool, opset: int) -> onnx.ModelProto:
    """``probabilities`` ``(N, C)`` to ``label``.

    ``label`` is ``classes[argmax]`` (int64 or string; the first class on ties, as numpy's
    argmax), or for multi-label the int64 0/1 matrix ``probabilities >= 0.5``.
    """
    n = len(classes)
    proba = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n])
    if multilabel:
        nodes = [_const("threshold", 0.5, np.float32),
                 helper.make_node("GreaterOrEqual", ["probabilities", "threshold"], ["on"]),
                 helper.make_node("Cast", ["on"], ["label"], to=TensorProto.INT64)]
        label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N", n])
    else:
        values, elem = label_values(classes)
        nodes = [helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0,
                                  select_last_index=0),
                 helper.make_node("Constant", [], ["classes"], value=helper.make_tensor(
                     "classes", elem, [n], values)),
                 helper.make_node("Gather", ["classes", "index"], ["label"], axis=0)]
        label = helper.make_tensor_value_info("label", elem, ["N"])
    graph = helper.make_graph(nodes, "sktransfer_label", [proba], [label])
    return model(graph, opset)


def label_values(classes: np.ndarray) -> tuple[list, int]:
    """The labels as ONNX tensor values: int64 for integers, strings for text; others are
    refused (an ONNX label is one of the two, as in skl2onnx's classifiers)."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iu":
        return [int(c) for c in classes], TensorProto.INT64
    if classes.dtype.kind == "U" or all(isinstance(c, str) for c in classes):
        return [str(c).encode() for c in classes], TensorProto.STRING
    raise ValueError(
        f"the fitted labels {list(classes)[:5]} (dtype {classes.dtype}) cannot be ONNX "
        "labels, which are int64 or strings; fit with integer or string labels "
        "(the probabilities' columns follow classes_)")


def segmentation_graph(n_classes: int, crop: int, resized: bool,
                       opset: int) -> onnx.ModelProto:
    """``scores`` ``(N, C, S, S)`` to ``mask`` ``(N, H, W)`` int64 and ``probabilities``
    ``(N, H, W, C)``; with ``resized``, the scores are first resized (bilinear, as the
    estimator's ``F.interpolate``) to ``image_size``."""
    inputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                            ["N", n_classes, crop, crop])]
    nodes, scores, h, w = [], "scores", crop, crop
    if resized:
        inputs.append(helper.make_tensor_value_info("image_size", TensorProto.INT64, [2]))
        nodes += [
            helper.make_node("Shape", ["scores"], ["score_shape"], end=2),
            helper.make_node("Concat", ["score_shape", "image_size"], ["sizes"], axis=0),
            helper.make_node("Resize", ["scores", "", "", "sizes"], ["full_scores"],
                             mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
        ]
        scores, h, w = "full_scores", "H", "W"
    nodes += [
        helper.make_node("ArgMax", [scores], ["mask"], axis=1, keepdims=0),
        helper.make_node("Softmax", [scores], ["softmax"], axis=1),
        helper.make_node("Transpose", ["softmax"], ["probabilities"], perm=[0, 2, 3, 1]),
    ]
    outputs = [helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", h, w]),
               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                             ["N", h, w, n_classes])]
    graph = helper.make_graph(nodes, "sktransfer_segmentation", inputs, outputs)
    return model(graph, opset)


def join(first: onnx.ModelProto, second: onnx.ModelProto, io_map: list[tuple[str, str]],
         prefix: str, outputs: list[str] | None = None) -> onnx.ModelProto:
    """One model: ``first``'s outputs feed ``second``'s inputs as ``io_map`` pairs them.

    Every name inside ``second`` except its inputs and outputs gets ``prefix`` (so two
    graphs' ``Constant_0`` never collide); both take the higher of their IR versions and
    the union of their opset imports. ``outputs`` (default: those of ``first`` that
    ``second`` does not consume, then ``second``'s) are the joined model's, in that order.
    """
    second = compose.add_prefix(second, prefix, rename_inputs=False, rename_outputs=False)
    ir = max(first.ir_version, second.ir_version)
    first.ir_version = second.ir_version = ir
    domains = {}
    for m in (first, second):
        for op in m.opset_import:
            domains[op.domain] = max(domains.get(op.domain, 0), op.version)
    for m in (first, second):
        del m.opset_import[:]
        m.opset_import.extend(helper.make_opsetid(d, v) for d, v in domains.items())
    if outputs is None:
        consumed = {a for a, _ in io_map}
        outputs = [o.name for o in first.graph.output if o.name not in consumed]
        outputs += [o.name for o in second.graph.output]
    joined = compose.merge_models(first, second, io_map=io_map, outputs=outputs)
    order = {name: i for i, name in enumerate(outputs)}  # merge_models puts first's first
    ordered = sorted(joined.graph.output, key=lambda o: order[o.name])
    del joined.graph.output[:]
    joined.graph.output.extend(ordered)
    return joined


def rename_output(m: onnx.ModelProto, old: str, new: str) -> None:
    """Rename the graph output ``old`` to ``new`` (in place), wherever it is produced or
    consumed."""
    for node in m.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in m.graph.output:
        if out.name == old:
            out.name = new


__all__: list[str] = []
