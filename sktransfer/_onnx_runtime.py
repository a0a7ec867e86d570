"""Run a graph written by :func:`~sktransfer.export_onnx` with onnxruntime, on images as the
estimators take them (paths, arrays, PIL images), prepared by the library's own code."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.utils.metaestimators import available_if
from torchvision.transforms import InterpolationMode

from ._onnx_contract import read_onnx_metadata, require
from ._onnx_quantize import as_uint8
from .images import Preprocessing, as_image_source, image_tensor, iter_batches

_PROBABILITIES = ("classifier", "multilabel", "segmenter")


def _has_probabilities(model: OnnxModel) -> bool:
    return model.task_ in _PROBABILITIES and "probabilities" in model.outputs_


def _predicts(model: OnnxModel) -> bool:
    return model.task_ != "transform"


class OnnxModel:
    """An exported ONNX graph, predicting like the estimator it was exported from.

    Images are decoded, resized and cropped by the library's own code, as the estimators
    do, then given to the graph as uint8 (float images in ``[0, 1]`` are rounded to
    uint8 first, where the estimators compute on the floats). A segmentation graph
    exported without ``resize`` returns masks at its input size; exported with
    ``resize=True``, at each image's size, as the estimator.

    Parameters
    ----------
    path : path
        A ``.onnx`` file written by :func:`~sktransfer.export_onnx`.
    batch_size : int, default=32
        Images per ``run`` call.
    n_threads : int, default=None
        Threads of onnxruntime's operators (``intra_op_num_threads``); ``None`` lets
        onnxruntime choose.

    Attributes
    ----------
    metadata_ : dict
        The graph's contract (:func:`~sktransfer.read_onnx_metadata`).
    task_ : str
        ``"classifier"``, ``"multilabel"``, ``"regressor"``, ``"segmenter"`` or
        ``"transform"``.
    classes_ : ndarray or None
        The fitted labels.
    outputs_ : list of str
        The graph's outputs.
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 32,
                 n_threads: int | None = None):
        require("onnxruntime")
        import onnxruntime as ort

        self.path, self.batch_size, self.n_threads = os.fspath(path), batch_size, n_threads
        self.metadata_ = read_onnx_metadata(path)
        options = ort.SessionOptions()
        if n_threads is not None:
            options.intra_op_num_threads = int(n_threads)
        self.session_ = ort.InferenceSession(self.path, options,
                                             providers=["CPUExecutionProvider"])
        self.task_ = self.metadata_["task"]
        self.outputs_ = [o.name for o in self.session_.get_outputs()]
        classes = self.metadata_.get("classes")
        self.classes_ = None if classes is None else np.asarray(classes)
        self.multilabel_ = self.task_ == "multilabel"
        if self.task_ == "segmenter":
            self.n_classes_ = len(self.classes_)
        p = self.metadata_["preprocessing"]
        crop = int(p["crop_size"])
        self.preprocessing_ = Preprocessing(
            int(p["resize_size"] or crop), crop, tuple(p["mean"]), tuple(p["std"]),
            InterpolationMode(p["interpolation"]))
        self.resizes_ = bool(p["in_graph"])

    @available_if(_has_probabilities)
    def predict_proba(self, X: object) -> np.ndarray | list[np.ndarray]:
        """The graph's ``probabilities`` (per pixel for a segmenter).

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors.

        Returns
        -------
        proba : ndarray or list of ndarray
            ``(n_samples, n_classes)``; per pixel for a segmenter (a list for images of
            several sizes).
        """
        return self._run(X, "probabilities")

    @available_if(_predicts)
    def predict(self, X: object) -> np.ndarray | list[np.ndarray]:
        """The graph's ``label``, ``predictions`` or ``mask``.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors.

        Returns
        -------
        predictions : ndarray or list of ndarray
            Labels, predicted targets, or masks (a list for images of several sizes; a
            segmentation graph exported without ``resize`` gives masks at its input
            size).
        """
        name = {"regressor": "predictions", "segmenter": "mask"}.get(self.task_, "label")
        return self._run(X, name)

    def transform(self, X: object) -> np.ndarray:
        """The graph's ``embeddings`` (a feature extractor's export).

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays or tensors.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features)
            One embedding per image.
        """
        if "embeddings" not in self.outputs_:
            raise AttributeError(f"{self.path} has no embeddings output ({self.outputs_})")
        return self._run(X, "embeddings")

    def _run(self, X: object, output: str) -> np.ndarray | list[np.ndarray]:
        source = as_image_source(X)
        if not self.resizes_ and self.task_ != "segmenter":
            parts = [self._call(batch, output)
                     for _, batch in iter_batches(source, self.preprocessing_, self.batch_size)]
            return np.concatenate(parts) if parts else np.empty(0)
        # the graph resizes: images go at their own size, consecutive equal sizes together
        out: list[np.ndarray] = []
        group: list[torch.Tensor] = []
        for i in range(len(source)):
            image = self._own_size(source, i)
            if group and image.shape != group[0].shape:
                out += list(self._call(torch.stack(group), output))
                group = []
            group.append(image)
            if len(group) == self.batch_size:
                out += list(self._call(torch.stack(group), output))
                group = []
        if group:
            out += list(self._call(torch.stack(group), output))
        if self.task_ == "segmenter" and not (source.is_array and out):
            return out
        return np.stack(out) if out else np.empty(0)

    def _own_size(self, source, index: int) -> torch.Tensor:
        image = image_tensor(source.read(index))
        if not self.resizes_:  # a segmentation graph of fixed size: the square it takes
            from ._segmentation_data import resize_image

            image = resize_image(image, self.preprocessing_.crop_size)
        return as_uint8(image)  # before grouping: a group mixes no dtypes

    def _call(self, batch: torch.Tensor, output: str) -> np.ndarray:
        images = as_uint8(batch).permute(0, 2, 3, 1).contiguous().numpy()
        return self.session_.run([output], {"images": images})[0]


__all__ = ["OnnxModel"]
