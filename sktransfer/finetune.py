"""FineTuneClassifier: fine-tune a pretrained CNN as a scikit-learn classifier (skorch inside)."""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import ProgressBar
from skorch.helper import predefined_split
from torch import nn

from . import _runtime
from ._resume import TrainingState, fit_fingerprint, read_checkpoint
from ._training import AmpNet, GroupUnfreezer, ImageDataset, TransferNet, default_augmentation
from .backbones import DEFAULT_MODEL, load_backbone
from .images import as_image_source

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "adam": torch.optim.Adam}


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained CNN: new head, chosen unfreeze depth, layer-wise learning rates.

    The pretrained classifier is replaced by a linear head sized to the classes of ``y``.
    ``unfreeze`` picks the strategy: ``0`` trains the head only (the frozen-base strategy),
    ``k`` also trains the top ``k`` layer groups, ``"all"`` trains everything; so
    ``GridSearchCV(FineTuneClassifier(), {"unfreeze": [0, 1, 2, "all"]})`` chooses it.
    The head trains at ``lr`` and the trainable group ``d`` levels below it at
    ``lr * lr_decay ** d``. BatchNorm layers of frozen groups stay in eval mode.

    Parameters
    ----------
    model : str or torch.nn.Module, default="efficientnet_b0"
        Backbone, as for :class:`PretrainedFeatureExtractor`.
    weights : str, path or None, default="DEFAULT"
        Backbone weights, as for :class:`PretrainedFeatureExtractor`.
    unfreeze : int or "all", default=0
        Number of top layer groups to train besides the head.
    lr : float, default=1e-3
        Learning rate of the head.
    lr_decay : float, default=0.3
        Factor between the learning rates of consecutive groups (0 < lr_decay <= 1).
    freeze_epochs : int, default=1
        Epochs that train the head alone before the ``unfreeze`` groups join with fresh
        optimizer state (two-phase schedule). Ignored when ``unfreeze=0``.
    max_epochs : int, default=10
        Total epochs, both phases included.
    batch_size : int, default=32
        Images per step.
    optimizer : {"adamw", "adam", "sgd"}, default="adamw"
        Optimizer (SGD with momentum 0.9).
    weight_decay : float, default=1e-4
        Weight decay of the optimizer.
    validation_fraction : float, default=0.0
        Share of the training data held out (stratified) for early stopping: training
        stops when the validation loss has not improved for ``patience`` epochs and the
        best weights are restored. ``0`` trains for ``max_epochs``.
    patience : int, default=3
        Epochs without improvement before early stopping.
    augment : bool or callable, default=False
        Training-time augmentation: ``True`` for random resized crop, flip and colour
        jitter; or a callable taking and returning a PIL image or ``(3, H, W)`` tensor.
        Never applied at prediction.
    groups : list or dict, default=None
        Layer groups (stem first), when the backbone's natural stages do not suit.
    image_size, resize_size, mean, std : optional
        Preprocessing overrides, as for :class:`PretrainedFeatureExtractor`.
    device : str, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        Autocast dtype of forward passes; ``"auto"`` is bf16 on GPUs that support it and
        float32 elsewhere. (float16 training would need loss scaling, so it is refused.)
    random_state : int, default=None
        Seed for head initialisation, shuffling, the validation split and augmentation.
        On the CPU, equal seeds and equal thread counts give identical models (see
        ``n_threads``). The global torch RNG is left as is.
    num_workers : int, default=0
        DataLoader worker processes decoding and augmenting images during training and
        prediction; 0 does it in the main process.
    n_threads : int, default=None
        CPU threads torch uses during ``fit`` and ``predict`` (restored afterwards);
        ``None`` keeps torch's setting. Training results depend on the thread count
        (gradient sums are split differently), and ``GridSearchCV(n_jobs=k)`` runs its
        fits in workers with fewer threads than a single process, so set ``n_threads``
        (1 suits parallel searches) for results identical across ``n_jobs`` settings.
    checkpoint : path, default=None
        Folder for a checkpoint written (atomically) after every epoch: weights, optimizer
        state, history, random state. A fit with the same parameters on the same data
        resumes from it where the previous one stopped; one that has already finished
        returns at once; raising ``max_epochs`` continues training. Each distinct fit
        (parameters, images, labels) has its own file, so cross-validation folds and
        grid points never collide. Delete the folder to start over.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks, for power users.
    verbose : bool, default=False
        Print skorch's per-epoch table.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch net (its ``history``, ``module_``...).
    layer_groups_ : list of str
        Names of the backbone's layer groups, stem first.
    n_epochs_ : int
        Epochs trained (resumed ones included).
    best_epoch_ : int
        The epoch whose weights the model holds: the lowest validation loss, or the last
        completed epoch without a validation set.
    interrupted_ : bool
        Whether ``fit`` was stopped by Ctrl-C (KeyboardInterrupt).

    Notes
    -----
    **Interrupting.** Ctrl-C during ``fit`` stops training and leaves the estimator
    fitted with the best weights so far (``best_epoch_``, ``interrupted_=True``); the
    KeyboardInterrupt is then re-raised so that scripts and searches stop too. Ctrl-C
    before the first epoch ends leaves the estimator as it was. With ``checkpoint``,
    calling ``fit`` again resumes; on the CPU the resumed model is identical to one
    trained without interruption.
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        weights: str | os.PathLike | None = "DEFAULT",
        unfreeze: int | str = 0,
        lr: float = 1e-3,
        lr_decay: float = 0.3,
        freeze_epochs: int = 1,
        max_epochs: int = 10,
        batch_size: int = 32,
        optimizer: str = "adamw",
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.0,
        patience: int = 3,
        augment: bool | object = False,
        groups: list | dict | None = None,
        image_size: int | None = None,
        resize_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        device: str = "auto",
        precision: str = "auto",
        random_state: int | None = None,
        num_workers: int = 0,
        n_threads: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        callbacks: list | None = None,
        verbose: bool = False,
    ):
        self.model = model
        self.weights = weights
        self.unfreeze = unfreeze
        self.lr = lr
        self.lr_decay = lr_decay
        self.freeze_epochs = freeze_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.groups = groups
        self.image_size = image_size
        self.resize_size = resize_size
        self.mean = mean
        self.std = std
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.num_workers = num_workers
        self.n_threads = n_threads
        self.checkpoint = checkpoint
        self.callbacks = callbacks
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X: object, y: object) -> FineTuneClassifier:
        """Fine-tune on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : images
            Any input :class:`PretrainedFeatureExtractor` accepts.
        y : array-like of shape (n_samples,)
            Class labels (strings work).

        Returns
        -------
        self : FineTuneClassifier
        """
        self._check_params()
        with _runtime.torch_threads(self.n_threads):
            return self._fit(X, y)

    def _fit(self, X: object, y: object) -> FineTuneClassifier:
        source = as_image_source(X)
        classes, y_enc = self._encode_y(y, len(source))
        device = _runtime.resolve_device(self.device)
        ckpt_path, meta, checkpoint = self._checkpoint(source, y_enc)
        if checkpoint is not None:
            seed = checkpoint["meta"]["seed"]
        elif self.random_state is not None:
            seed = self.random_state
        else:
            seed = int(np.random.default_rng().integers(2**31))
        meta["seed"] = seed
        # Seeded, without touching the caller's global torch RNG.
        with torch.random.fork_rng(devices=[] if device.type != "cuda" else [device]):
            torch.manual_seed(seed)
            backbone = load_backbone(
                self.model, self.weights, image_size=self.image_size,
                resize_size=self.resize_size, mean=self.mean, std=self.std, groups=self.groups,
            )
            n_groups = len(backbone.groups)
            if self.unfreeze != "all" and self.unfreeze > n_groups:
                raise ValueError(
                    f"unfreeze={self.unfreeze} but {backbone.name} has {n_groups} layer groups "
                    f"{[g for g, _ in backbone.groups]}; use 0..{n_groups} or 'all'"
                )
            prep = backbone.preprocessing
            module = TransferNet(backbone.body, backbone.num_features, len(classes), prep,
                                 channels_last=_runtime.use_channels_last(device))
            train_idx, valid_idx = self._split(y_enc, seed)
            augment = self._augmentation(prep.crop_size)
            train_ds = ImageDataset(source, prep, y_enc, train_idx, augment)
            train_split = None
            validate = valid_idx is not None
            if validate:
                train_split = predefined_split(ImageDataset(source, prep, y_enc, valid_idx))
            state = TrainingState(monitor="valid_loss" if validate else None,
                                  patience=self.patience if validate else None,
                                  path=ckpt_path, meta=meta)
            callbacks = [("unfreeze", GroupUnfreezer(self._trainable(backbone), self._phase1())),
                         ("training_state", state)]
            if self.verbose:
                callbacks.append(("progress_bar", ProgressBar()))
            callbacks += list(self.callbacks or [])
            net = self._make_net(module, backbone, len(classes), device, callbacks,
                                 train_split).initialize()
            if checkpoint is not None:
                state.resume(net, checkpoint)
            if not state.stopped_:
                net.partial_fit(train_ds, y=None)  # ends quietly on Ctrl-C; see interrupted_
        interrupted = getattr(net, "interrupted_", False)
        if not state.restore_best(net):
            # Ctrl-C before the first epoch ended: nothing worth keeping, a previous fit
            # (if any) stays as it was.
            raise KeyboardInterrupt
        net.release()
        self._set_fitted(net, classes, backbone, len(net.history), state.best_epoch_,
                         interrupted)
        state.best_state_ = None  # in the module now; not worth a second copy in pickles
        if interrupted:
            # Usable now, with the best weights so far; the caller still sees the Ctrl-C.
            raise KeyboardInterrupt
        return self

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities; rows sum to 1.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float32
        """
        check_is_fitted(self, "net_")
        source = as_image_source(X)
        dataset = ImageDataset(source, self.preprocessing_)
        # skorch maps a GPU-fitted net to the CPU when it is unpickled where CUDA is absent
        with self.net_.on_device(), _runtime.torch_threads(self.n_threads):
            proba = self.net_.predict_proba(dataset)
        return np.asarray(proba, dtype=np.float32)

    def predict(self, X: object) -> np.ndarray:
        """Predicted class labels.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def summary(self) -> list[dict]:
        """Parameters per layer group: count, whether trained, learning rate.

        Returns
        -------
        rows : list of dict
            One row per group, stem first, then the head: ``group``, ``params``,
            ``trainable`` and ``lr`` (``None`` where frozen).
        """
        check_is_fitted(self, "net_")
        module = self.net_.module_
        lrs = {}
        for pattern, options in self._param_groups(self._group_members):
            lrs[pattern] = options["lr"]
        rows = []
        trained = [members for members, _ in self._depths(self._group_members)]
        for name, members in self._group_members:
            params = [p for m in members for p in module.body.net.get_submodule(m).parameters()]
            trainable = members in trained
            lr = next((lrs[f"body.net.{m}.*"] for m in members if f"body.net.{m}.*" in lrs),
                      None)
            rows.append({"group": name, "params": sum(p.numel() for p in params),
                         "trainable": trainable, "lr": lr if trainable else None})
        rows.append({"group": "head", "params": sum(p.numel() for p in module.head.parameters()),
                     "trainable": True, "lr": self.lr})
        return rows

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.non_deterministic = True  # GPU kernels; on the CPU a fixed random_state is exact
        return tags

    # ------------------------------------------------------------------ internals
    def _check_params(self) -> None:
        unfreeze = self.unfreeze
        if not (unfreeze == "all" or (isinstance(unfreeze, numbers.Integral)
                                      and not isinstance(unfreeze, bool) and unfreeze >= 0)):
            raise ValueError(f"unfreeze must be a non-negative integer or 'all', got {unfreeze!r}")
        if not isinstance(self.lr_decay, numbers.Real) or not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if not isinstance(self.lr, numbers.Real) or self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        for name in ("freeze_epochs",):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("max_epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.unfreeze not in (0,) and self.freeze_epochs >= self.max_epochs:
            raise ValueError(
                f"freeze_epochs={self.freeze_epochs} leaves no epoch to train the unfrozen "
                f"groups within max_epochs={self.max_epochs}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if not (isinstance(self.augment, bool) or callable(self.augment)):
            raise ValueError(f"augment must be True, False or a callable, got {self.augment!r}")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got "
                             f"{self.precision!r} (float16 training needs loss scaling)")
        if self.n_threads is not None and (not isinstance(self.n_threads, numbers.Integral)
                                           or self.n_threads < 1):
            raise ValueError(f"n_threads must be None or a positive integer, got "
                             f"{self.n_threads!r}")
        if not isinstance(self.num_workers, numbers.Integral) or self.num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got "
                             f"{self.num_workers!r}")

    def _make_net(self, module: TransferNet, backbone, n_classes: int, device: torch.device,
                  callbacks: list, train_split=None) -> AmpNet:
        """The skorch net around ``module`` (fit and import)."""
        return AmpNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=_OPTIMIZERS[self.optimizer],
            optimizer__param_groups=self._param_groups(backbone.groups),
            optimizer__weight_decay=self.weight_decay,
            **({"optimizer__momentum": 0.9} if self.optimizer == "sgd" else {}),
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            iterator_train__num_workers=self.num_workers,
            iterator_valid__num_workers=self.num_workers,
            train_split=train_split,
            callbacks=callbacks,
            classes=list(range(n_classes)),
            device=str(device),
            amp_dtype=self._amp_dtype(device),
            verbose=int(bool(self.verbose)),
        )

    def _set_fitted(self, net: AmpNet, classes: np.ndarray, backbone, n_epochs: int,
                    best_epoch: int, interrupted: bool = False) -> None:
        """Set every fitted attribute at once (a failed fit leaves the old ones whole)."""
        self.net_ = net
        self.classes_ = classes
        self.layer_groups_ = [g for g, _ in backbone.groups]
        self._group_members = backbone.groups
        self.preprocessing_ = backbone.preprocessing
        self.n_epochs_ = n_epochs
        self.best_epoch_ = best_epoch
        self.interrupted_ = interrupted

    def _checkpoint(self, source, y_enc) -> tuple[os.PathLike | None, dict, dict | None]:
        """The checkpoint file of this fit, its metadata, and its contents if it exists."""
        if self.checkpoint is None:
            return None, {}, None
        volatile = {"max_epochs", "patience", "verbose", "callbacks", "num_workers", "device",
                    "checkpoint"}
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in volatile}
        key = fit_fingerprint(params, source, y_enc)
        path = os.path.join(self.checkpoint, f"finetune-{key[:24]}.ckpt")
        meta = {"fingerprint": key}
        return path, meta, read_checkpoint(path, meta)

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        dtype = _runtime.autocast_dtype(device, self.precision)
        return None if dtype == torch.float16 else dtype  # no fp16 without loss scaling

    def _encode_y(self, y: object, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        if y is None:
            raise ValueError("FineTuneClassifier needs labels y")
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if len(y) != n_samples:
            raise ValueError(f"X has {n_samples} images but y has {len(y)} labels")
        missing = [i for i, v in enumerate(y) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise ValueError(f"y[{missing[0]}] is missing (None/NaN); every image needs a label")
        try:
            classes = np.unique(y)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in y})
            raise ValueError(f"y mixes label types {kinds}; use one type") from None
        if len(classes) < 2:
            raise ValueError(f"y has a single class '{classes[0]}'; need at least 2")
        return classes, np.searchsorted(classes, y).astype(np.int64)

    def _split(self, y: np.ndarray, seed: int):
        idx = np.arange(len(y))
        if not self.validation_fraction:
            return idx, None
        try:
            train, valid = train_test_split(idx, test_size=self.validation_fraction,
                                            stratify=y, random_state=seed)
        except ValueError as exc:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} cannot hold out a stratified "
                f"validation set: {exc}") from None
        return train, valid

    def _augmentation(self, crop_size: int):
        if self.augment is True:
            return default_augmentation(crop_size)
        return self.augment or None

    def _phase1(self) -> int:
        return 0 if self.unfreeze == 0 else self.freeze_epochs

    def _depths(self, groups) -> list[tuple[list[str], int]]:
        """(members, depth below the head) of each trainable group, top group first."""
        n = len(groups) if self.unfreeze == "all" else self.unfreeze
        top = groups[::-1][:n]
        return [(members, depth) for depth, (_, members) in enumerate(top, start=1)]

    def _trainable(self, backbone) -> list[str]:
        if self.unfreeze == "all":
            return ["body."]
        return [f"body.net.{m}." for members, _ in self._depths(backbone.groups) for m in members]

    def _param_groups(self, groups) -> list[tuple[str, dict]]:
        """skorch ``param_groups``: (pattern, {"lr": ...}) per trainable group member."""
        pgroups = []
        for members, depth in self._depths(groups):
            for m in members:
                pgroups.append((f"body.net.{m}.*", {"lr": self.lr * self.lr_decay ** depth}))
        if self.unfreeze == "all":  # parameters outside any group: the stem's rate
            pgroups.append(("body.*", {"lr": self.lr * self.lr_decay ** max(len(groups), 1)}))
        return pgroups
