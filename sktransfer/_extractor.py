"""PretrainedFeatureExtractor: a frozen pretrained CNN as a scikit-learn transformer."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from . import _runtime
from ._base import ImageEstimator
from ._cache import EmbeddingCache, cache_directory, content_bytes, fingerprint
from ._cost import CostMeter, count_flops
from ._dask import is_dask_collection
from ._deployable import Deployable, Normalised, Tapped, frozen_copy
from ._meta import architecture_key, meta_copy
from ._seeding import seeded
from ._validation import CACHE, POSITIVE, fit_context
from .backbones import DEFAULT_MODEL
from .backbones._heads import pool_features
from .images import ImageSource, Preprocessing, as_image_source, iter_batches

# the tapped layers' output sizes, once per process for each architecture, layers and size
_LAYER_SIZES: dict[tuple, list[int]] = {}


class _Stop(Exception):
    """Raised by a forward hook once every requested layer has been seen."""


def _default_n_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class PretrainedFeatureExtractor(TransformerMixin, ImageEstimator):
    """Embed images with a frozen pretrained CNN.

    The network runs in evaluation mode under :func:`torch.inference_mode`; no parameter
    requires gradients. By default each image becomes the globally average-pooled output
    of the network's last convolutional stage (the input of its classifier).

    Parameters
    ----------
    model : str or torch.nn.Module, default="efficientnet_b0"
        A torchvision classification model name, or any module. A module is copied at
        ``fit`` and never modified; its classification head (``fc``, ``classifier``,
        ``head``, ``heads`` or ``_fc``, or the trailing Linear layers of a Sequential)
        is removed.
    weights : str, path or None, default="DEFAULT"
        For a torchvision name: a weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``...),
        loaded through torchvision's weights API and the torch hub cache
        (``$TORCH_HOME/hub/checkpoints``), downloading when online; ``None`` for random
        initialisation; or a path to a local weights file, read with
        ``torch.load(..., weights_only=True)``. For a module: ``"DEFAULT"`` or ``None`` keep
        its weights, a path loads a state dict into it.
    layer : str or list of str, default=None
        Name(s) of intermediate submodules (after head removal, e.g. ``"layer3"`` for a
        ResNet, ``"features.4"`` for an EfficientNet) whose outputs are globally pooled and
        concatenated instead of the final features. Earlier layers transfer better to
        domains far from ImageNet.
    batch_size : int, default=32
        Images per forward pass.
    device : str or torch.device, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu.
    precision : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Autocast dtype; ``"auto"`` uses mixed precision on GPUs and on CPUs that compute
        bfloat16 in hardware (AVX-512 BF16, AMX, Arm BF16), float32 on other CPUs. The
        output is float32 in every case; the embedding cache keys include the dtype.
    image_size : int, default=None
        Side of the square centre crop fed to the network; ``None`` uses the weights'
        own (224 for most ImageNet models). The resize keeps the weights' resize/crop ratio.
    resize_size : int, default=None
        Shorter side after resizing, before cropping; ``None`` derives it as above.
    mean, std : tuple of 3 floats, default=None
        Normalisation; ``None`` uses the weights' own (ImageNet statistics).
    n_jobs : int, default=None
        Threads decoding image files ahead of the model; ``None`` means ``min(4, cpus)``.
    compile : bool, default=False
        Run the network through :func:`torch.compile` (compiled once per process, on the
        first ``transform``; not with ``layer``). Pays off for large inputs on GPUs;
        compilation takes tens of seconds.
    cache : str, path or joblib.Memory, default=None
        Folder of an on-disk embedding cache keyed by image content (file bytes, pixel
        bytes) and by everything that changes an embedding (architecture, weights, layers,
        preprocessing, compute dtype): each image is embedded once across fits, clones,
        cross-validation folds and processes. ``None`` disables it.
    random_state : int, RandomState instance or None, default=None
        Seeds the random initialisation of a network built with ``weights=None`` (random
        features, a baseline): an int gives the same network in every process and on every
        joblib backend; ``None`` draws a fresh one at each ``fit``. Torch's global random
        state is never touched. Pretrained weights involve no randomness.
    verbose : bool, default=False
        Show a progress bar while transforming.

    Attributes
    ----------
    backbone_ : Backbone
        The loaded network, its layer groups and preprocessing.
    n_features_out_ : int
        Length of each embedding.
    flops_per_image_ : int
        Forward floating-point operations per image (torch's FLOP counter; see
        :class:`~sktransfer.ComputeCost`). Counted when first needed (the first image
        embedded, or reading it), once per process for each architecture and input size.
    precision_ : str
        The compute dtype ``precision`` resolved to on this machine at ``fit`` (or
        :func:`~sktransfer.import_model`): ``"float32"``, ``"bfloat16"`` or ``"float16"``
        (``"auto"`` is bfloat16 on CPUs with native bf16 and on GPUs that support it,
        float16 on other GPUs and on MPS, float32 on other CPUs). Each ``transform``
        resolves ``precision`` again on the machine it runs on;
        ``transform_cost_.precision`` says what it used.
    fit_cost_ : ComputeCost
        What ``fit`` cost: loading the network (time; no image is processed, so no FLOP
        and, when ``codecarbon`` is installed, 0 kWh: energy is measured from the first
        batch). After ``fit_transform`` (what a
        :class:`~sklearn.pipeline.Pipeline` calls) it includes embedding the training
        images, so that :func:`sktransfer.fit_cost` of a pipeline is what fitting it cost.
    transform_cost_ : ComputeCost
        What the latest ``transform`` cost: wall time, images embedded (cache hits are
        free), forward FLOPs, device, precision, and energy and CO2e when ``codecarbon``
        is installed. Set by every ``transform`` call (the only state ``transform``
        changes).

    See Also
    --------
    FineTuneClassifier : Fine-tunes the network instead of freezing it.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> pipe = make_pipeline(PretrainedFeatureExtractor(), LogisticRegression())
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        layer: str | list[str] | None = None,
        batch_size: int = 32,
        device: str | torch.device = "auto",
        precision: str = "auto",
        image_size: int | None = None,
        resize_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        n_jobs: int | None = None,
        compile: bool = False,
        cache: str | os.PathLike | object | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ sklearn API
    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "layer": [str, list, None],
        "n_jobs": [POSITIVE, None],
        "compile": ["boolean"],
        "cache": CACHE,
        "random_state": ["random_state"],
    }

    @fit_context
    def fit(self, X: object = None, y: object = None) -> PretrainedFeatureExtractor:
        """Load the pretrained network; nothing is learned from ``X``.

        Parameters
        ----------
        X : images, default=None
            Checked for validity when given (see :func:`sktransfer.images.as_image_source`).
        y : None
            Ignored; accepted for scikit-learn's pipelines.

        Returns
        -------
        self : PretrainedFeatureExtractor
            The fitted extractor.
        """
        self._check_params()
        if X is not None:
            as_image_source(X)
        device = self._device()
        dtype = self._compute_dtype(device)
        # no image goes through (energy: 0 kWh, no codecarbon task); the dtype transform uses
        meter = CostMeter(device, dtype, lazy_energy=True)
        try:
            # a network with random weights is drawn from random_state, not torch's global RNG
            with seeded(self.random_state) if self.weights is None else nullcontext():
                # frozen: memoised pretrained weights are shared, not copied, across fits
                backbone = self._load_backbone(progress=bool(self.verbose), share_weights=True)
            self._setup(backbone)
        finally:
            cost = meter.stop()
        self.precision_ = _runtime.precision_name(dtype)
        self.fit_cost_ = cost
        return self

    def _setup(self, backbone) -> PretrainedFeatureExtractor:
        """Freeze ``backbone`` and make it this extractor's network (fit and import)."""
        backbone.text = None  # a vision-language model's text tower: images need none
        for param in backbone.body.parameters():
            param.requires_grad_(False)
        backbone.body.eval()
        self.backbone_ = backbone
        self.n_features_out_ = self._probe_features()
        self._flops_per_image = None  # counted when first needed (a cached fit needs none)
        if cache_directory(self.cache) is not None:
            self.model_fingerprint_ = self._fingerprint()
        return self

    @property
    def flops_per_image_(self) -> int:
        check_is_fitted(self, "backbone_")
        if getattr(self, "_flops_per_image", None) is None:
            size = self.backbone_.preprocessing.crop_size
            self._flops_per_image, _ = count_flops(
                self.backbone_.body, (3, size, size), forward=self._forward,
                forward_key=("layers", tuple(self._layers() or ())))
        return self._flops_per_image

    def _fingerprint(self) -> str:
        """A digest of everything but the image and the dtype that changes an embedding."""
        backbone = self.backbone_
        prep = backbone.preprocessing
        # Named weights identify themselves; any other network is hashed tensor by tensor.
        weights = backbone.weights_id or backbone.body.state_dict()
        return fingerprint(
            type(backbone.body.net).__qualname__, repr(backbone.body.net), weights,
            self._layers(), prep.resize_size, prep.crop_size, prep.mean, prep.std,
            str(prep.interpolation),
        )

    def fit_transform(self, X: object, y: object = None, **fit_params: object) -> np.ndarray:
        """Load the network, then embed ``X``; ``fit_cost_`` covers both.

        Parameters
        ----------
        X : images
            As for :meth:`transform`.
        y : None
            Ignored; accepted for scikit-learn's pipelines.
        **fit_params : dict
            Accepted for scikit-learn compatibility; none is used.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, ``n_features_out_``), dtype float32
            One embedding per image of ``X``.
        """
        embeddings = self.fit(X, y).transform(X)
        self.fit_cost_ = self.fit_cost_ + self.transform_cost_
        return embeddings

    def __sktransfer_export__(self) -> tuple[nn.Module, Preprocessing, list, dict]:
        """What :func:`~sktransfer.export_model` writes: network, preprocessing, groups, the
        weights' name."""
        check_is_fitted(self, "backbone_")
        backbone = self.backbone_
        return (backbone.body, backbone.preprocessing, backbone.groups,
                {"weights_id": backbone.weights_id})

    def __sktransfer_restore__(self, backbone, state: dict,
                               fitted: dict) -> PretrainedFeatureExtractor:
        """Become the fitted extractor that :meth:`__sktransfer_export__` described."""
        backbone.weights_id = fitted.get("weights_id")
        backbone.body.load_state_dict(state, strict=True)
        self.precision_ = _runtime.precision_name(self._compute_dtype(self._device()))
        return self._setup(backbone)

    def __sktransfer_deploy__(self) -> Deployable:
        """What ``transform`` computes, from resized uint8 images to embeddings, as one
        float32 torch module copied from the fitted network (see :mod:`sktransfer.deploy`)."""
        check_is_fitted(self, "backbone_")
        prep = self.backbone_.preprocessing
        body = frozen_copy(self.backbone_.body)
        layers = self._layers()
        network = Normalised(body, prep) if layers is None else Tapped(body, layers, prep)
        return Deployable(network, "transform", prep)

    def transform(self, X: object) -> np.ndarray:
        """Embed images.

        Parameters
        ----------
        X : images
            Paths, PIL images, arrays (uint8 NHWC/NHW, float NCHW in [0, 1]), tensors or a
            pandas Series/one-column DataFrame of any of these; or a Dask collection of
            them (dask Array of images, dask Series/one-column DataFrame or Bag of paths).

        Returns
        -------
        embeddings : ndarray of shape (n_samples, ``n_features_out_``), dtype float32
            One embedding per image, in the order of ``X``. For a Dask collection, a lazy
            ``dask.array.Array`` computed partition by partition on the active scheduler
            (see the user guide's "Scaling out" page); ``transform_cost_`` is then not set.
        """
        check_is_fitted(self, "backbone_")
        if is_dask_collection(X):
            return self._lazy(X, "transform")
        source = as_image_source(X)
        device = self._device()
        meter = CostMeter(device, self._compute_dtype(device), lazy_energy=True)
        directory = cache_directory(self.cache)
        try:
            if directory is None:
                out = self._embed(source, meter)
            else:
                out = self._embed_cached(source, directory, meter)
        finally:
            cost = meter.stop()
        self.transform_cost_ = cost
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Get the names of the embedding dimensions.

        ``pretrainedfeatureextractor0`` ... for the final features, ``<layer>_<i>`` when
        ``layer`` is given.

        Parameters
        ----------
        input_features : None
            Ignored: the inputs are images, not named features.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per column of :meth:`transform`'s output.
        """
        check_is_fitted(self, "backbone_")
        if self.layer is None:
            prefix = type(self).__name__.lower()
            return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object)
        names = []
        for layer, size in zip(self._layers(), self._layer_sizes_, strict=True):
            names.extend(f"{layer}_{i}" for i in range(size))
        return np.asarray(names, dtype=object)

    def _output_meta(self, method: str) -> np.ndarray:
        """An empty array shaped and typed like ``method``'s output (for Dask)."""
        return np.empty((0, self.n_features_out_), dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # output is always float32
        return tags

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        """Pickle without compiled graphs; the network is on the CPU between calls."""
        state = super().__getstate__()
        state.pop("_compiled", None)  # compiled graphs do not pickle; rebuilt on demand
        return state

    # ------------------------------------------------------------------ internals
    def _check_params(self) -> None:
        """What the declared constraints cannot say (they were checked by fit_context)."""
        super()._check_params()
        layers = self._layers()
        if layers is not None and (not layers or not all(isinstance(x, str) for x in layers)):
            raise ValueError(f"layer must be None, a module name or a list of names, got "
                             f"{self.layer!r}")

    def _layers(self) -> list[str] | None:
        if self.layer is None:
            return None
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)

    def _probe_features(self) -> int:
        """Check ``layer`` names and measure output sizes with one dummy forward pass."""
        net = self.backbone_.body.net
        layers = self._layers()
        if layers is not None:
            modules = dict(net.named_modules())
            for name in layers:
                if name not in modules or name == "":
                    top = [n for n, _ in net.named_children()]
                    raise ValueError(
                        f"layer {name!r} is not a submodule of {self.backbone_.name}; "
                        f"top-level modules are {top} (see model.named_modules())"
                    )
        if layers is None:
            return self.backbone_.num_features
        size = self.backbone_.preprocessing.crop_size
        body = self.backbone_.body
        key = (architecture_key(body), tuple(layers), size)
        sizes = _LAYER_SIZES.get(key)
        if sizes is None:
            try:  # shapes only, on the meta device
                with torch.no_grad():
                    feats = self._tap(meta_copy(body), torch.zeros(1, 3, size, size,
                                                                   device="meta"), layers)
            except Exception:  # a forward that needs values (or a layer it never runs)
                with torch.inference_mode():
                    feats = self._tap(body, torch.zeros(1, 3, size, size), layers)
            sizes = _LAYER_SIZES[key] = [int(f.shape[1]) for f in feats]
        self._layer_sizes_ = list(sizes)
        return sum(self._layer_sizes_)

    def _embed(self, source: ImageSource, meter: CostMeter) -> np.ndarray:
        """Run the network over every image of ``source``, batch by batch."""
        meter.computing()
        device = self._device()
        amp_dtype = self._compute_dtype(device)
        channels_last = _runtime.use_channels_last(device)
        body = self._body_on(device, channels_last)
        try:
            return self._run(source, body, device, amp_dtype, channels_last, meter)
        finally:
            _runtime.park_on_cpu(self.backbone_.body, device)  # give the GPU back

    def _run(self, source: ImageSource, body: nn.Module, device: torch.device,
             amp_dtype: torch.dtype | None, channels_last: bool,
             meter: CostMeter) -> np.ndarray:
        prep = self.backbone_.preprocessing
        n_workers = self.n_jobs if self.n_jobs is not None else _default_n_workers()
        out = np.empty((len(source), self.n_features_out_), dtype=np.float32)
        pin = device.type == "cuda"
        with tqdm(total=len(source), disable=not self.verbose, unit="img",
                  desc="Extracting features") as bar, torch.inference_mode():
            for start, batch in iter_batches(source, prep, self.batch_size, n_workers=n_workers):
                if pin:
                    batch = batch.pin_memory()
                batch = batch.to(device, non_blocking=pin)
                batch = prep.normalize(batch)
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with _runtime.autocast(device, amp_dtype):
                    feats = self._forward(body, batch)
                out[start : start + len(batch)] = feats.float().cpu().numpy()
                meter.add(len(batch), self.flops_per_image_)
                bar.update(len(batch))
        return out

    def _embed_cached(self, source: ImageSource, directory, meter: CostMeter) -> np.ndarray:
        """Look each image up by content; embed and store only the misses."""
        device = self._device()
        amp_dtype = self._compute_dtype(device)
        model_key = fingerprint(self.model_fingerprint_, str(amp_dtype))
        cache = EmbeddingCache(directory, model_key[:32], self.n_features_out_)
        def lookup(i: int) -> tuple[str, np.ndarray | None]:
            key = fingerprint(model_key, content_bytes(source.item(i)))
            return key, cache.get(key)

        n_workers = self.n_jobs if self.n_jobs is not None else _default_n_workers()
        # reads and hashes overlap; one task per worker, not per image (a task costs more
        # than hashing an image in memory)
        chunks = np.array_split(np.arange(len(source)), n_workers)
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            looked_up = [pair for chunk in pool.map(lambda idx: [lookup(i) for i in idx], chunks)
                         for pair in chunk]
        keys = [key for key, _ in looked_up]
        found = [vector for _, vector in looked_up]
        out = np.empty((len(source), self.n_features_out_), dtype=np.float32)
        missing = [i for i, vector in enumerate(found) if vector is None]
        for i, vector in enumerate(found):
            if vector is not None:
                out[i] = vector
        if missing:
            out[missing] = self._embed(source.subset(missing), meter)
            for i in missing:
                cache.put(keys[i], out[i])
        return out

    def _body_on(self, device: torch.device, channels_last: bool) -> nn.Module:
        body = self.backbone_.body
        if channels_last:
            body.to(device, memory_format=torch.channels_last)
        else:
            body.to(device)
        body.eval()
        if not self.compile or self.layer is not None:  # hooks on layers run eagerly
            return body
        compiled = getattr(self, "_compiled", None)
        if compiled is None or compiled[0] != device:
            compiled = (device, torch.compile(body))
            self._compiled = compiled
        return compiled[1]

    def _forward(self, body: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        layers = self._layers()
        if layers is None:
            return body(batch)
        return torch.cat(self._tap(body, batch, layers), dim=1)

    @staticmethod
    def _tap(body: nn.Module, batch: torch.Tensor, layers: list[str]) -> list[torch.Tensor]:
        """Pooled outputs of the named submodules; the forward stops after the last one."""
        captured: dict[str, torch.Tensor] = {}
        handles = []

        def hook(name):
            def fn(_module, _inputs, output):
                captured[name] = pool_features(output)
                if len(captured) == len(set(layers)):
                    raise _Stop

            return fn

        modules = dict(body.net.named_modules())
        for name in dict.fromkeys(layers):
            handles.append(modules[name].register_forward_hook(hook(name)))
        try:
            body.net(batch)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [n for n in layers if n not in captured]
        if missing:
            raise ValueError(f"layer(s) {missing} were not run by the model's forward pass")
        return [captured[n] for n in layers]
