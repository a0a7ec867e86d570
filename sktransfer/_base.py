"""What every sktransfer estimator shares: a backbone, its preprocessing, where and in which
precision it runs, image inputs, and the export/restore pair.

A new estimator (domain adaptation, segmentation...) subclasses :class:`ImageEstimator`
and adds its own parameters' constraints, its fit, and its export/restore pair.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from sklearn.base import BaseEstimator

from . import _runtime
from ._dask import lazy_call
from ._seeding import seeded
from ._validation import BACKBONE
from .backbones import Backbone, load_backbone


class ImageEstimator(BaseEstimator):
    """Base of the estimators built on a pretrained backbone; not for direct use.

    Subclasses take the backbone parameters (``model``, ``weights``, ``image_size``,
    ``resize_size``, ``mean``, ``std``, ``batch_size``, ``device``, ``precision``,
    ``verbose``), extend ``_parameter_constraints`` with their own, call
    :meth:`_check_params` (through ``super()``) for cross-parameter checks, and define
    ``__sktransfer_export__`` / ``__sktransfer_restore__`` for pickle-free exchange
    (:mod:`sktransfer.exchange`).
    """

    _parameter_constraints: dict = {**BACKBONE}
    _segmentation_models = False  # whether ``model`` may name a segmentation model

    def __setstate__(self, state: dict) -> None:
        """Unpickle; a parameter added since the model was saved takes its default (a
        model pickled by an earlier version still clones, prints and refits)."""
        defaults = {name: p.default for name, p in inspect.signature(
            type(self).__init__).parameters.items() if p.default is not inspect.Parameter.empty}
        super().__setstate__({**{k: v for k, v in defaults.items() if k not in state},
                              **state})

    def _store_params(self, params: dict) -> None:
        """Store the ``__init__`` arguments as they are (scikit-learn's rule: no checks);
        ``__init__`` calls ``self._store_params(locals())``."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _check_params(self) -> None:
        """What the declared constraints cannot say; subclasses extend it."""
        _runtime.resolve_device(self.device)

    def _load_backbone(self, **options: object) -> Backbone:
        """The backbone these parameters describe (``options``: ``groups``, ``progress``)."""
        return self._backbone_from(self.model, self.weights, image_size=self.image_size,
                                   resize_size=self.resize_size, mean=self.mean,
                                   std=self.std, **options)

    def _backbone_from(self, model: object, weights: object, **options: object) -> Backbone:
        """Build a backbone from a spec (:func:`~sktransfer.backbones.load_backbone`)."""
        return load_backbone(model, weights, segmentation=self._segmentation_models,
                             **options)

    def __sktransfer_architecture__(self, prep, groups: list,
                                    pretrained: bool = False) -> Backbone:
        """The backbone of an exported estimator, without its weights (restore loads them).

        Part of the exchange protocol with ``__sktransfer_export__`` /
        ``__sktransfer_restore__``: :func:`~sktransfer.import_model` asks the estimator
        for its architecture rather than knowing which kinds of backbone it takes.

        Parameters
        ----------
        prep : Preprocessing
            The exported preprocessing.
        groups : list of (str, list of str)
            The exported layer groups.
        pretrained : bool, default=False
            Load the estimator's ``weights`` (a file that holds only what training
            changed: low-rank adapters and the head).

        Returns
        -------
        Backbone
            Built from the estimator's ``model`` with ``weights=None`` (or its
            ``weights``, ``pretrained``).
        """
        weights = self.weights if pretrained else None
        with seeded(0):  # random weights, replaced by the restore: torch's RNG left alone
            backbone = self._backbone_from(self.model, weights, image_size=prep.crop_size,
                                           resize_size=prep.resize_size, mean=prep.mean,
                                           std=prep.std, groups=dict(groups))
        backbone.preprocessing = prep
        return backbone

    def _device(self) -> torch.device:
        """Where the network runs (``device="auto"`` resolved)."""
        return _runtime.resolve_device(self.device)

    def _compute_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype ``precision`` means on ``device`` (None: float32)."""
        return _runtime.autocast_dtype(device, self.precision)

    def _output_meta(self, method: str) -> np.ndarray:
        """An empty array with the dtype and trailing shape of ``method``'s output."""
        raise NotImplementedError

    def _lazy(self, X: object, method: str) -> object:
        """``method`` over the Dask collection ``X``: a lazy dask array (see ``_dask``)."""
        return lazy_call(self, X, method, self._output_meta(method))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images, not a feature matrix
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True  # file paths
        tags.requires_fit = True
        return tags
