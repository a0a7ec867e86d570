"""What the fine-tuning estimators share: parameters, the training run, prediction.

:class:`FineTuneClassifier` and :class:`FineTuneRegressor` differ only in how they read
``y`` (labels, label indicators, continuous targets), their loss, the size and output
function of their head and what ``predict`` returns; everything else (backbone and
preprocessing, freezing by depth, layer-wise rates, schedules, BatchNorm handling, the
learning-rate finder, early stopping, checkpoints, Ctrl-C, test-time augmentation, device
and threads) lives here once.
"""

from __future__ import annotations

import contextlib
import fnmatch
import numbers
import os

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import ProgressBar
from skorch.helper import predefined_split
from torch import nn

from . import _runtime
from ._base import ImageEstimator
from ._batchnorm import BatchNormRecalibration, recalibrate
from ._cost import ComputeCost, CostMeter
from ._dask import is_dask_collection
from ._deployable import Deployable, Finished, Mirrored, check_tta, frozen_copy
from ._lora import (
    add_adapters,
    default_targets,
    has_adapters,
    merge_adapters,
    tensor_digest,
)
from ._losses import WeightedLoss
from ._lr_finder import LRFindResult, range_test
from ._plan import GroupPlan, trained_after_warmup, training_plan
from ._resume import TrainingState, fit_fingerprint, read_checkpoint
from ._schedules import SCHEDULES, LRSchedule
from ._seeding import is_int, seed_from, seeded
from ._training import (
    BATCHNORM_MODES,
    AmpNet,
    GroupUnfreezer,
    ImageDataset,
    TransferNet,
    default_augmentation,
    tta_views,
)
from ._validation import (
    NON_NEGATIVE,
    PATH,
    POSITIVE,
    Count,
    Numbers,
    StrOptions,
    check_param,
    check_params,
    fit_context,
    options,
)
from .images import Preprocessing, as_image_source

OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "adam": torch.optim.Adam}
MAX_TTA_CROPS = 9

class BaseFineTuner(ImageEstimator):
    """Shared machinery of the fine-tuning estimators; not for direct use.

    Subclasses define ``_encode_targets``, ``_fitted_targets``, ``_loss``, ``_output``
    (the net's output function) and their ``predict``, and add the constraints of their
    own parameters to ``_parameter_constraints``.
    """

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "unfreeze": [NON_NEGATIVE, StrOptions({"all"})],
        "lr": [Numbers(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lr_decay": [Numbers(numbers.Real, 0, 1, closed="right"), None],
        "schedule": [options(SCHEDULES)],
        "batchnorm": [options(BATCHNORM_MODES)],
        "freeze_epochs": [NON_NEGATIVE],
        "max_epochs": [POSITIVE],
        "optimizer": [options(OPTIMIZERS)],
        "weight_decay": [Numbers(numbers.Real, 0, None, closed="left")],
        "validation_fraction": [Numbers(numbers.Real, 0, 1, closed="left")],
        "patience": [POSITIVE],
        "augment": ["boolean", callable],
        "tta": ["boolean", Count(1, MAX_TTA_CROPS)],
        "groups": [list, dict, None],
        "random_state": ["random_state"],
        "num_workers": [NON_NEGATIVE],
        "n_threads": [POSITIVE, None],
        "checkpoint": [*PATH, None],
        "callbacks": [list, None],
        "adapter": [StrOptions({"lora"}), None],
        "adapter_rank": [POSITIVE],
        "adapter_alpha": [Numbers(numbers.Real, 0, None, closed="neither")],
        "adapter_targets": [list, None],
        "adapter_merge": ["boolean"],
    }

    _net_class = AmpNet  # the skorch net class of fit, the LR finder and import

    # Parameters that do not change what fit learns (left out of checkpoint fingerprints).
    _VOLATILE = {"max_epochs", "patience", "verbose", "callbacks", "num_workers", "device",
                 "adapter_merge",
                 "checkpoint", "tta"}

    # ------------------------------------------------------------------ subclass hooks
    def _encode_targets(self, y: object, n_samples: int) -> tuple[np.ndarray, dict]:
        """(targets as the loss wants them, fitted target attributes)."""
        raise NotImplementedError

    def _example_weights(self, targets: np.ndarray, info: dict) -> np.ndarray | None:
        """Per-example weights implied by the targets (class weights); None for none."""
        return None

    def _stratify(self, targets: np.ndarray) -> np.ndarray | None:
        return None

    def _fingerprint_targets(self, targets: object) -> object:
        """What identifies the targets in a checkpoint's fingerprint."""
        return targets

    def _loss(self, info: dict) -> WeightedLoss:
        raise NotImplementedError

    def _output(self, info: dict):
        """skorch's ``predict_nonlinearity``: raw outputs to predictions, views averaged."""
        raise NotImplementedError

    def _n_outputs(self, info: dict) -> int:
        raise NotImplementedError

    def _dataset(self, source, prep: Preprocessing, targets=None, indices=None, augment=None,
                 weights=None, views=None, extras=None) -> ImageDataset:
        """The items the net trains or predicts on (segmentation: images with masks)."""
        return ImageDataset(source, prep, targets, indices, augment, weights, views, extras)

    def _training_extras(self, X: object, source, targets: np.ndarray,
                         info: dict) -> dict[str, np.ndarray] | None:
        """Per-image arrays the loss reads beside the targets (a teacher's probabilities);
        None for none."""
        return None

    def _after_training(self, net: AmpNet, plain_train: ImageDataset, validate: bool) -> None:
        """Once the kept epoch's weights are restored: BatchNorm statistics that match
        them (``batchnorm="recalibrate"`` without validation, which did it per epoch)."""
        if self.batchnorm == "recalibrate" and not validate:
            recalibrate(net, plain_train)

    def _after_fit(self, source, targets: np.ndarray, weights: np.ndarray | None,
                   seed: int) -> None:
        """Once fitted (not after a Ctrl-C): further fitted attributes from the training
        data and the fit's ``seed`` (domain adaptation's check against source-only
        training)."""

    def _fit_from_network(self, source, targets: np.ndarray, weights: np.ndarray | None,
                          train_idx: np.ndarray, valid_idx: np.ndarray | None) -> None:
        """Last, once fitted: attributes learned from the final network's outputs on the
        training or validation rows (a classifier's temperature and reject threshold)."""

    def _training_callbacks(self, train_ds: ImageDataset) -> list:
        """Extra ``(name, callback)`` pairs for this fit (before the training state's)."""
        return []

    # ------------------------------------------------------------------ fit
    @fit_context
    def fit(self, X: object, y: object, sample_weight: object = None) -> BaseFineTuner:
        """Fine-tune on images ``X`` with targets ``y``.

        Parameters
        ----------
        X : images
            Any input :class:`PretrainedFeatureExtractor` accepts.
        y : array-like
            Targets (see the class description).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each image in the loss: a weight of 2 counts like the
            image given twice. Combined (multiplied) with ``class_weight`` where that
            applies.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._check_params()  # the declared constraints were checked by fit_context
        meter = CostMeter()
        try:
            with _runtime.torch_threads(self.n_threads):
                return self._fit(X, y, sample_weight, meter)
        finally:
            meter.stop()  # ends the energy measurement whatever happened

    def _prepare(self, X: object, y: object, sample_weight: object):
        """Images, encoded targets, target info and example weights (all checked)."""
        source = as_image_source(X)
        targets, info = self._encode_targets(y, len(source))
        weights = example_weights(sample_weight, len(source),
                                  self._example_weights(targets, info))
        return source, targets, info, weights

    def _fit(self, X: object, y: object, sample_weight: object,
             meter: CostMeter) -> BaseFineTuner:
        source, targets, info, weights = self._prepare(X, y, sample_weight)
        device = self._device()
        meter.set_compute(device, self._amp_dtype(device))
        # a teacher's probabilities are part of what this fit learns from (checkpoint key)
        extras = self._training_extras(X, source, targets, info)
        ckpt_path, meta, checkpoint = self._checkpoint(source, targets, weights, extras)
        if checkpoint is not None:
            seed = checkpoint["meta"]["seed"]
        else:
            seed = self._seed()
        meta["seed"] = seed
        fork = [] if device.type != "cuda" else [device]
        backbone = self._backbone(seed, fork)
        train_idx, valid_idx = self._split(targets, seed)
        train_ds = self._dataset(source, backbone.preprocessing, targets, train_idx,
                                 self._augmentation(backbone.preprocessing.crop_size), weights,
                                 extras=extras)
        finder = None
        if self.lr != "auto":
            lr = float(self.lr)
        elif checkpoint is not None:
            lr = float(checkpoint["meta"]["lr"])
        else:
            finder = self._range_test(self._backbone(seed, fork), train_ds, info, device, seed,
                                      fork, meter=meter)
            lr = finder.suggestion
        meta["lr"] = lr
        plain_train = self._dataset(source, backbone.preprocessing, targets, train_idx,
                                    weights=weights)
        validate = valid_idx is not None
        # Seeded, without touching the caller's global torch RNG.
        with seeded(seed, fork):
            module = self._module(backbone, info, device)
            self._add_adapters(module, backbone.groups)
            plan = self._plan(module, backbone.groups, lr)
            train_split = None
            if validate:
                train_split = predefined_split(self._dataset(
                    source, backbone.preprocessing, targets, valid_idx, weights=weights,
                    extras=extras))
            state = TrainingState(monitor="valid_loss" if validate else None,
                                  patience=self.patience if validate else None,
                                  path=ckpt_path, meta=meta)
            callbacks = [
                ("unfreeze", GroupUnfreezer(trained_after_warmup(plan), self._phase1())),
                ("schedule", LRSchedule(self.schedule, self._phase1(), self.max_epochs)),
            ]
            if validate and self.batchnorm == "recalibrate":
                callbacks.append(("recalibrate", BatchNormRecalibration(plain_train)))
            callbacks += self._training_callbacks(train_ds)
            callbacks.append(("training_state", state))
            if self.verbose:
                callbacks.append(("progress_bar", ProgressBar()))
            callbacks += list(self.callbacks or [])
            net = self._make_net(module, plan, info, device, callbacks, lr,
                                 train_split).initialize()
            net.cost_meter = meter
            if checkpoint is not None:
                state.resume(net, checkpoint)
            if not state.stopped_:
                net.partial_fit(train_ds, y=None)  # ends quietly on Ctrl-C; see interrupted_
        interrupted = getattr(net, "interrupted_", False)
        if not state.restore_best(net):
            # Ctrl-C before the first epoch ended: nothing worth keeping, a previous fit
            # (if any) stays as it was.
            raise KeyboardInterrupt
        self._after_training(net, plain_train, validate)
        adapted = self.adapter is not None
        if adapted and self.adapter_merge:
            merge_adapters(net.module_)  # a plain network: predicting costs nothing extra
        net.module_.eval()  # fitted: in inference mode for whoever uses the module
        net.release()
        self._set_fitted(net, info, backbone, len(net.history), state.best_epoch_,
                         interrupted, lr, finder, meter.stop())
        self._trained_plan = plan if adapted else None  # what trained (summary)
        state.best_state_ = None  # in the module now; not worth a second copy in pickles
        if interrupted:
            # Usable now, with the best weights so far (calibrated, with its reject
            # threshold: one pass, which a second Ctrl-C skips); the caller still sees
            # the Ctrl-C.
            with contextlib.suppress(KeyboardInterrupt):
                self._fit_from_network(source, targets, weights, train_idx, valid_idx)
            raise KeyboardInterrupt
        self._after_fit(source, targets, weights, seed)
        self._fit_from_network(source, targets, weights, train_idx, valid_idx)
        return self

    def _seed(self) -> int:
        """The fit's seed: ``random_state`` itself when an int, else drawn from it."""
        return seed_from(self.random_state)

    def _backbone(self, seed: int, fork: list):
        with seeded(seed, fork):
            backbone = self._load_backbone(groups=self.groups)
        n_groups = len(backbone.groups)
        if self.unfreeze != "all" and self.unfreeze > n_groups:
            raise ValueError(
                f"unfreeze={self.unfreeze} but {backbone.name} has {n_groups} layer groups "
                f"{[g for g, _ in backbone.groups]}; use 0..{n_groups} or 'all'"
            )
        return backbone

    def _module(self, backbone, info: dict, device: torch.device) -> TransferNet:
        return TransferNet(backbone.body, backbone.num_features, self._n_outputs(info),
                           backbone.preprocessing,
                           channels_last=_runtime.use_channels_last(device),
                           batchnorm=self.batchnorm)

    # ------------------------------------------------------------------ LR finder
    def lr_find(self, X: object, y: object, sample_weight: object = None, *,
                start_lr: float = 1e-7, end_lr: float = 10.0,
                num_steps: int = 100) -> LRFindResult:
        """Learning-rate range test: train a copy at exponentially rising rates.

        A throw-away copy of the network, set up as ``fit`` would set up its unfrozen
        phase (head and ``unfreeze`` groups trainable, layer-wise rates, augmentation,
        BatchNorm mode), trains for up to ``num_steps`` batches (cycling over the data)
        while the head's rate rises from ``start_lr`` to ``end_lr``; the other groups
        keep their ratio to it. The run stops early once the smoothed loss exceeds 4
        times its minimum. The estimator, its parameters and the global random number
        generators are left untouched.

        Parameters
        ----------
        X, y, sample_weight
            As for :meth:`fit`.
        start_lr, end_lr : float, default=1e-7, 10.0
            The range of head rates tried.
        num_steps : int, default=100
            Steps at most (a few hundred at most is plenty).

        Returns
        -------
        LRFindResult
            Rates, smoothed and raw losses, the suggested rate (a tenth of the rate at the
            lowest smoothed loss; fastai's "valley" suggestion is reported beside it) and a
            ``plot()`` method.
        """
        check_params(self)
        self._check_params()
        if not 0 < start_lr < end_lr:
            raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr!r}, {end_lr!r}")
        if not is_int(num_steps) or not 2 <= num_steps <= 1000:
            raise ValueError(f"num_steps must be an integer in [2, 1000], got {num_steps!r}")
        with _runtime.torch_threads(self.n_threads):
            source, targets, info, weights = self._prepare(X, y, sample_weight)
            device = self._device()
            seed = self._seed()
            fork = [] if device.type != "cuda" else [device]
            backbone = self._backbone(seed, fork)
            dataset = self._dataset(source, backbone.preprocessing, targets, None,
                                    self._augmentation(backbone.preprocessing.crop_size),
                                    weights, extras=self._training_extras(X, source,
                                                                          targets, info))
            return self._range_test(backbone, dataset, info, device, seed, fork,
                                    start_lr=start_lr, end_lr=end_lr, num_steps=num_steps)

    def _range_test(self, backbone, dataset, info: dict, device, seed: int, fork: list,
                    start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                    meter: CostMeter | None = None) -> LRFindResult:
        with seeded(seed, fork):
            module = self._module(backbone, info, device)
            self._add_adapters(module, backbone.groups)
            net = self._make_net(module, self._plan(module, backbone.groups, 1.0), info,
                                 device, [], 1.0).initialize()
            net.cost_meter = meter
            GroupUnfreezer(trained_after_warmup(net.plan), 0).set_trainable(net, True)
            net.initialize_optimizer()
            result = range_test(net, dataset, start_lr=start_lr, end_lr=end_lr,
                                num_steps=num_steps)
            net.release()
        return result

    # ------------------------------------------------------------------ predict
    def _predict_outputs(self, X: object) -> np.ndarray:
        """The net's outputs after its output function, test-time views averaged."""
        check_is_fitted(self, "net_")
        if is_dask_collection(X):
            return self._lazy(X, "predict_proba")
        self._check_tta()
        source = as_image_source(X)
        dataset = self._dataset(source, self.preprocessing_, views=tta_views(self.tta))
        with self._predicting():
            out = self.net_.predict_proba(dataset)
        return np.asarray(out, dtype=np.float32)

    @contextlib.contextmanager
    def _predicting(self):
        """The fitted net on its device, in the precision ``precision`` means on this
        machine (a model fitted in bf16 predicts in float32 on a CPU without native bf16,
        and the reverse), with ``n_threads``; torch's global random state is left as it
        was (each DataLoader iteration draws a seed from it)."""
        net = self.net_
        # skorch maps a GPU-fitted net to the CPU when it is unpickled where CUDA is absent
        dtype = self._amp_dtype(torch.device(net.device))
        with net.on_device(), net.computing_in(dtype), _runtime.torch_threads(self.n_threads), \
                torch.random.fork_rng(devices=[]):
            yield

    def summary(self) -> list[dict]:
        """Parameters per layer group: count, whether trained, learning rate.

        Returns
        -------
        rows : list of dict
            One row per group, stem first, then the head: ``group``, ``params``,
            ``trainable`` and ``lr`` (the base rate before the schedule; ``None`` where
            frozen). With ``adapter``, a trained group's row counts its adapters, and a
            ``"base (frozen)"`` row the pretrained weights they leave frozen.
        """
        check_is_fitted(self, "net_")
        plan = getattr(self, "_trained_plan", None) or self._plan(
            self.net_.module_, self._group_members, self.lr_)
        return [{"group": entry.group, "params": entry.n_params,
                 "trainable": entry.trainable, "lr": entry.lr} for entry in plan]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True  # GPU kernels; on the CPU a fixed random_state is exact
        return tags

    # ------------------------------------------------------------------ internals
    def _check_tta(self) -> None:
        """``tta`` is read at predict time too: it may have been set after fit."""
        check_param(self, "tta")

    def _check_params(self) -> None:
        """What the declared constraints cannot say: checks across parameters."""
        if self.unfreeze != 0 and self.freeze_epochs >= self.max_epochs:
            raise ValueError(
                f"freeze_epochs={self.freeze_epochs} leaves no epoch to train the unfrozen "
                f"groups within max_epochs={self.max_epochs}"
            )
        if self.adapter is not None and self.batchnorm != "frozen":
            raise ValueError(f"adapter={self.adapter!r} keeps every pretrained weight "
                             "frozen, BatchNorm layers included, so they normalise with "
                             f"their pretrained statistics: batchnorm={self.batchnorm!r} "
                             "does not apply; use batchnorm='frozen' (the default)")
        if self.adapter is not None and self.unfreeze == 0:
            raise ValueError(f"adapter={self.adapter!r} with unfreeze=0 adapts nothing (the "
                             "head alone trains); use unfreeze >= 1 or 'all' for the groups "
                             "that get adapters")
        if self.precision == "float16":
            raise ValueError("precision='float16' is not available for training (it needs "
                             "loss scaling); use 'bfloat16', 'float32' or 'auto'")
        super()._check_params()

    def _make_net(self, module: TransferNet, plan: list[GroupPlan], info: dict,
                  device: torch.device, callbacks: list, lr: float,
                  train_split=None) -> AmpNet:
        """The skorch net around ``module``, its optimizer following ``plan`` (fit, the LR
        finder and import)."""
        return self._net_class(
            module,
            criterion=self._loss(info),
            optimizer=OPTIMIZERS[self.optimizer],
            plan=plan,
            optimizer__weight_decay=self.weight_decay,
            **({"optimizer__momentum": 0.9} if self.optimizer == "sgd" else {}),
            lr=lr,
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),  # torch's DataLoader refuses NumPy integers
            iterator_train__shuffle=True,
            iterator_train__num_workers=self.num_workers,
            iterator_valid__num_workers=self.num_workers,
            train_split=train_split,
            callbacks=callbacks,
            predict_nonlinearity=self._output(info),
            device=str(device),
            amp_dtype=self._amp_dtype(device),
            verbose=int(bool(self.verbose)),
        )

    def __sktransfer_export__(self) -> tuple[nn.Module, Preprocessing, list, dict]:
        """What :func:`~sktransfer.export_model` writes, without reaching inside.

        Returns
        -------
        module, preprocessing, groups, fitted
            The fitted network (its ``state_dict`` is exported), its preprocessing, its
            layer groups and the other fitted values as JSON-ready types.
        """
        check_is_fitted(self, "net_")
        fitted = {**self._fitted_targets(), "n_epochs": self.n_epochs_,
                  "best_epoch": self.best_epoch_, "lr": self.lr_,
                  "precision": getattr(self, "precision_", None),
                  "adapters": "separate" if has_adapters(self.net_.module_) else None}
        return self.net_.module_, self.preprocessing_, self._group_members, fitted

    def __sktransfer_deploy__(self) -> Deployable:
        """What the fitted estimator computes, from resized uint8 images to the outputs of
        its prediction methods, as one float32 torch module copied from the fitted net
        (see :mod:`sktransfer.deploy`); ``tta=True`` deploys as the mirror average."""
        check_is_fitted(self, "net_")
        network = Finished(frozen_copy(self.net_.module_), self.net_.predict_nonlinearity)
        if check_tta(self):
            network = Mirrored(network)
        return self._deployable(network)

    def _deployable(self, network: nn.Module) -> Deployable:
        """The :class:`Deployable` of the net with its output function applied."""
        raise NotImplementedError

    def __sktransfer_restore__(self, backbone, state: dict, fitted: dict) -> BaseFineTuner:
        """Become the fitted estimator that :meth:`__sktransfer_export__` described.

        ``backbone`` is built from the exported preprocessing and groups; ``state`` is the
        network's ``state_dict`` (``load_state_dict``'s RuntimeError when it does not fit).
        """
        self._check_params()
        info = self._target_info(fitted)
        device = self._device()
        with seeded(0):  # a head of random weights, replaced below: torch's RNG left alone
            module = self._module(backbone, info, device)
            if fitted.get("adapters") == "separate":  # the state holds them beside W
                self._add_adapters(module, backbone.groups)
        if fitted.get("adapters_only"):  # the base's weights came with the backbone
            base = {k: v for k, v in module.state_dict().items() if k not in state}
            if tensor_digest(base) != fitted.get("base_digest"):
                raise ValueError("the file holds adapters trained on other base weights "
                                 "than those this model's spec and weights (or the module "
                                 "passed) give; pass the module with the pretrained "
                                 "weights the model was fine-tuned from")
            missing, unexpected = module.load_state_dict(state, strict=False)
            lacking = sorted(set(missing) - set(base))
            if unexpected or lacking:
                raise RuntimeError(f"Error(s) in loading state_dict: unexpected "
                                   f"{unexpected[:3]}, missing {lacking[:3]}")
        else:
            module.load_state_dict(state, strict=True)
        module.eval()
        lr = float(fitted.get("lr", 1e-3))
        net = self._make_net(module, self._plan(module, backbone.groups, lr), info, device,
                             [], lr).initialize()
        net.release()
        self._set_fitted(net, info, backbone, int(fitted["n_epochs"]),
                         int(fitted["best_epoch"]), lr=lr)
        if fitted.get("precision"):  # what training used (files from before: resolved here)
            self.precision_ = str(fitted["precision"])
        return self

    def _set_fitted(self, net: AmpNet, info: dict, backbone, n_epochs: int,
                    best_epoch: int, interrupted: bool = False, lr: float | None = None,
                    finder: LRFindResult | None = None,
                    cost: ComputeCost | None = None) -> None:
        """Set every fitted attribute at once (a failed fit leaves the old ones whole)."""
        self.net_ = net
        self.fit_cost_ = cost
        for name, value in info.items():
            setattr(self, name, value)
        self.layer_groups_ = [g for g, _ in backbone.groups]
        self._group_members = backbone.groups
        self.preprocessing_ = backbone.preprocessing
        self.lr_ = float(lr if lr is not None else self.lr)
        self.lr_find_ = finder
        self.n_epochs_ = n_epochs
        self.best_epoch_ = best_epoch
        self.interrupted_ = interrupted
        self.precision_ = _runtime.precision_name(net.amp_dtype)

    def _checkpoint(self, source, targets, weights, extras=None
                    ) -> tuple[os.PathLike | None, dict, dict | None]:
        """The checkpoint file of this fit, its metadata, and its contents if it exists."""
        if self.checkpoint is None:
            return None, {}, None
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in self._VOLATILE}
        params["estimator"] = type(self).__name__
        labels = self._fingerprint_targets(targets)
        labels = labels if weights is None else [labels, weights]
        if extras:
            labels = [labels, *(extras[k] for k in sorted(extras))]
        key = fit_fingerprint(params, source, labels)
        path = os.path.join(self.checkpoint, f"finetune-{key[:24]}.ckpt")
        meta = {"fingerprint": key}
        return path, meta, read_checkpoint(path, meta)

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        dtype = self._compute_dtype(device)
        return None if dtype == torch.float16 else dtype  # no fp16 without loss scaling

    def _split(self, targets: np.ndarray, seed: int, idx: np.ndarray | None = None):
        """Training and validation indices among ``idx`` (all rows when None)."""
        idx = np.arange(len(targets)) if idx is None else idx
        if not self.validation_fraction:
            return idx, None
        strata = self._stratify(targets)
        try:
            train, valid = train_test_split(idx, test_size=self.validation_fraction,
                                            stratify=None if strata is None else strata[idx],
                                            random_state=seed)
        except ValueError as exc:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} cannot hold out a "
                f"validation set: {exc}") from None
        return train, valid

    def _augmentation(self, crop_size: int):
        if self.augment is True:
            return default_augmentation(crop_size)
        return self.augment or None

    def _plan(self, module: TransferNet, groups, lr: float) -> list[GroupPlan]:
        """What trains at which rate: :func:`~sktransfer._plan.training_plan`."""
        return training_plan(module, groups, unfreeze=self.unfreeze, lr=lr,
                             lr_decay=self.lr_decay, adapters=has_adapters(module))

    def _add_adapters(self, module: TransferNet, groups) -> None:
        """``adapter="lora"``: low-rank adapters on the target layers of the trained
        groups of ``module``'s body (:mod:`sktransfer._lora`)."""
        if self.adapter is None:
            return
        body = module.body
        named = [n for n, _ in body.named_modules()]

        def plain(name: str) -> str:  # as the backbone names it
            return name[len("net."):] if name.startswith("net.") else name

        if self.adapter_targets is None:
            names = default_targets(body)
        else:
            supported = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)
            modules = dict(body.named_modules())
            names = [n for n in named if n and isinstance(modules[n], supported) and any(
                fnmatch.fnmatchcase(plain(n), pattern) for pattern in self.adapter_targets)]
        if self.unfreeze != "all":
            members = [m for _, group in groups[len(groups) - int(self.unfreeze):]
                       for m in group]
            names = [n for n in names if any(plain(n) == m or plain(n).startswith(m + ".")
                                             for m in members)]
        if not names:
            where = ("of a supported kind (linear, convolution, attention) matching "
                     "adapter_targets") if self.adapter_targets is not None else \
                "of a supported kind (linear, attention, 1x1 convolution)"
            raise ValueError(f"adapter={self.adapter!r} found no layer {where} in the "
                             f"{self.unfreeze} trained group(s) of {type(body).__name__}")
        add_adapters(body, names, int(self.adapter_rank), float(self.adapter_alpha))

    def _phase1(self) -> int:
        return 0 if self.unfreeze == 0 else self.freeze_epochs


def example_weights(sample_weight: object, n_samples: int,
                    implied: np.ndarray | None = None) -> np.ndarray | None:
    """The weight of each example in the loss: ``sample_weight`` (checked) times the
    weights the targets imply (``implied``: class weights), None where all are 1."""
    weights = _check_sample_weight(sample_weight, n_samples)
    if implied is not None:
        weights = implied if weights is None else weights * implied
    if weights is not None and not weights.sum() > 0:
        factors = "sample weights" + (" (times class weights)" if implied is not None else "")
        raise ValueError(f"the {factors} sum to 0: no image would count in the loss")
    return weights


def _check_sample_weight(sample_weight: object, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("sample_weight must be an array of numbers") from None
    if w.ndim != 1 or len(w) != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        raise ValueError(f"sample_weight[{bad[0]}] is {w[bad[0]]}; weights must be finite "
                         "and non-negative")
    return w
