"""Training pieces behind the fine-tuning estimators: the network, its data, and the
skorch net and callbacks that drive them (the losses are in :mod:`sktransfer._losses`)."""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from . import _runtime
from ._moved import moved
from ._plan import GroupPlan, optimizer_groups
from ._resume import EarlyStop
from .images import ImageSource, Preprocessing, image_tensor

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
BATCHNORM_MODES = ("recalibrate", "frozen", "train")


class TransferNet(nn.Module):
    """A pretrained body with a new linear head.

    ``batchnorm`` says what BatchNorm layers do when the network trains: ``"frozen"``
    keeps every one in eval mode (their affine parameters may still train: the Keras
    rule); otherwise those of trained groups use batch statistics (``"train"``, and
    ``"recalibrate"``, whose running statistics are recomputed after training). BatchNorm
    layers whose parameters are frozen always stay in eval mode, so their running
    statistics never drift (skorch calls ``train()`` at every training step; this is where
    that is undone).

    ``head`` replaces the linear head (segmentation's decoder; it then defines the
    forward pass with its subclass).

    A batch of shape ``(N, V, 3, H, W)`` holds ``V`` views of each image (test-time
    augmentation); the output is then ``(N, V, n_outputs)``.
    """

    def __init__(self, body: nn.Module, num_features: int, n_outputs: int, prep: Preprocessing,
                 channels_last: bool = False, batchnorm: str = "train",
                 head: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.head = nn.Linear(num_features, n_outputs) if head is None else head
        self.prep = prep
        self.channels_last = channels_last
        self.batchnorm = batchnorm
        if channels_last:
            self.body.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The body's pooled features of a ``(N, 3, H, W)`` batch (the head's input)."""
        # Batches arrive resized but not normalised (uint8 where possible: 4x less to copy
        # to the device); normalisation runs on the device, batch by batch.
        x = self.prep.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = x.shape[1] if x.ndim == 5 else None
        if views is not None:
            x = x.flatten(0, 1)
        out = self.head(self.features(x))
        return out if views is None else out.unflatten(0, (-1, views))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if mode:
            body_frozen = not any(p.requires_grad for p in self.body.parameters())
            for module in self.body.modules():
                if isinstance(module, BN_TYPES):
                    params = list(module.parameters())
                    frozen = (not any(p.requires_grad for p in params)) if params else body_frozen
                    if frozen or self.batchnorm == "frozen":
                        module.eval()
        return self


def default_augmentation(crop_size: int) -> T.Compose:
    """Random resized crop, horizontal flip and mild colour jitter."""
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=(0.6, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.2, 0.2, 0.2),
    ])


# Where the crops of test-time augmentation sit, as (row, column) fractions of the free
# space: centre, the four corners, then the four edge midpoints.
CROP_POSITIONS = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0),
                  (0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0))


def tta_views(tta: bool | int) -> list[tuple[int, bool]] | None:
    """The views ``(crop position, mirrored)`` that test-time augmentation averages.

    ``False``: none (the plain centre crop); ``True`` or ``1``: the centre crop and its
    mirror image; ``n``: ``n`` crops (centre, corners, edge midpoints) and their mirrors.
    """
    if tta is False or tta is None:
        return None
    n = 1 if tta is True else int(tta)
    return [(k, flip) for k in range(n) for flip in (False, True)]


class ImageDataset(Dataset):
    """Items of an :class:`ImageSource`, resized and cropped (and augmented when training).

    Items are ``(image, target)``: images are ``(3, S, S)`` uint8 tensors (float in
    ``[0, 1]`` for float inputs), or ``(V, 3, S, S)`` with test-time ``views``;
    :class:`TransferNet` normalises whole batches on the device. With ``targets`` the
    target is ``{"y": target, "w": weight}`` (weight 1 unless ``weights`` are given),
    plus one entry per array of ``extras`` (per-image soft targets); without, it is 0.
    """

    def __init__(self, source: ImageSource, prep: Preprocessing, targets=None, indices=None,
                 augment=None, weights=None, views: list[tuple[int, bool]] | None = None,
                 extras: dict[str, np.ndarray] | None = None):
        self.source, self.prep, self.targets, self.augment = source, prep, targets, augment
        self.weights, self.views, self.extras = weights, views, extras or {}
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _image(self, img) -> torch.Tensor:
        if self.augment is None:
            return self.prep.prepare(img)  # the extractor's path, exactly
        img = self.augment(img)
        if isinstance(img, torch.Tensor) and img.shape[-1] != self.prep.crop_size:
            img = self.prep.resize_crop(img)
        elif not isinstance(img, torch.Tensor) and img.size != (self.prep.crop_size,) * 2:
            img = self.prep.resize_crop(img)
        return image_tensor(img)

    def _view_stack(self, img) -> torch.Tensor:
        crops = {}
        for k in {k for k, _ in self.views}:
            crop = self.prep.resize_crop(img) if k == 0 else self.prep.crop_at(
                img, *CROP_POSITIONS[k])
            crops[k] = image_tensor(crop)
        return torch.stack([crops[k].flip(-1) if flip else crops[k] for k, flip in self.views])

    def __getitem__(self, i: int):
        index = self.indices[i]
        img = self.source.read(index)
        img = self._view_stack(img) if self.views else self._image(img)
        if self.targets is None:
            return img, 0
        weight = 1.0 if self.weights is None else float(self.weights[index])
        target = self.targets[index]
        target = torch.as_tensor(target, dtype=torch.long if target.dtype.kind in "iu"
                                 else torch.float32)
        item = {"y": target, "w": torch.tensor(weight, dtype=torch.float32)}
        for name, values in self.extras.items():  # e.g. a teacher's probabilities
            item[name] = torch.as_tensor(values[index])
        return img, item


# Output transforms of the nets (skorch's predict_nonlinearity), averaging test-time views.
def softmax_views(out: torch.Tensor) -> torch.Tensor:
    """Class probabilities, averaged over test-time views when there are several."""
    proba = torch.softmax(out.float(), dim=-1)
    return proba.mean(1) if proba.ndim == 3 else proba


def sigmoid_views(out: torch.Tensor) -> torch.Tensor:
    """Per-label probabilities, averaged over test-time views when there are several."""
    proba = torch.sigmoid(out.float())
    return proba.mean(1) if proba.ndim == 3 else proba


class SoftmaxPerTask:
    """Class probabilities of each target column (multi-output: the outputs split into
    ``sizes``), side by side, averaged over test-time views when there are several."""

    def __init__(self, sizes: tuple[int, ...]):
        self.sizes = tuple(sizes)

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        proba = torch.cat([torch.softmax(part.float(), dim=-1)
                           for part in torch.split(out, self.sizes, dim=-1)], dim=-1)
        return proba.mean(1) if proba.ndim == 3 else proba


def mean_views(out: torch.Tensor) -> torch.Tensor:
    """Outputs as they are, averaged over test-time views when there are several."""
    out = out.float()
    return out.mean(1) if out.ndim == 3 else out


class GroupUnfreezer(Callback):
    """Two-phase schedule: the head alone for ``freeze_epochs``, then ``trainable`` too.

    ``trainable`` names the body parameters that train after the warm-up (from
    :func:`~sktransfer._plan.trained_after_warmup`). At the switch the optimizer is rebuilt,
    so training continues with fresh state.
    """

    def __init__(self, trainable: frozenset[str], freeze_epochs: int):
        self.trainable = trainable
        self.freeze_epochs = freeze_epochs

    def set_trainable(self, net, unfrozen: bool) -> None:
        module = net.module_
        for name, p in module.body.named_parameters(prefix="body"):
            p.requires_grad_(unfrozen and name in self.trainable)
        for p in module.head.parameters():
            p.requires_grad_(True)

    def on_train_begin(self, net, **kwargs) -> None:
        # a resumed fit may already be past the switch
        self.set_trainable(net, unfrozen=len(net.history) >= self.freeze_epochs)
        net.initialize_optimizer()

    def on_epoch_begin(self, net, **kwargs) -> None:
        epoch = len(net.history)  # 1-based, the current epoch has been appended
        if self.freeze_epochs and epoch == self.freeze_epochs + 1:
            self.set_trainable(net, unfrozen=True)
            net.initialize_optimizer()


_SAME_AS_FITTED = "<module_>"  # placeholder for the init module when it is the fitted one


# (net id, dtype) of the predictions running in this thread (AmpNet.computing_in)
_COMPUTING_IN: contextvars.ContextVar[tuple[int, torch.dtype | None] | None] = \
    contextvars.ContextVar("sktransfer_computing_in", default=None)


class AmpNet(NeuralNet):
    """skorch net running forward passes under autocast, with one extra callback event.

    Callbacks that define ``on_train_pass_end(net)`` are called after each epoch's
    training pass, before its validation pass (BatchNorm recalibration needs that slot).
    While ``cost_meter`` is set (a :class:`~sktransfer._cost.CostMeter`), every forward
    pass, and the backward pass that follows it in training, is counted there.
    """

    def __init__(self, *args, amp_dtype: torch.dtype | None = None,
                 plan: list[GroupPlan] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp_dtype = amp_dtype
        self.plan = plan
        self.cost_meter = None

    def get_params_for_optimizer(self, prefix, named_parameters):
        """Parameter groups from :attr:`plan`: rate per layer group, no decay on 1-d ones."""
        plan = getattr(self, "plan", None)  # None in models pickled before plans existed
        if plan is None or prefix != "optimizer":
            return super().get_params_for_optimizer(prefix, named_parameters)
        kwargs = self.get_params_for(prefix)
        kwargs.pop("param_groups", None)
        kwargs.setdefault("lr", self.lr)
        groups = optimizer_groups(plan, named_parameters, kwargs.get("weight_decay", 0.0))
        return (groups,), kwargs

    def __getstate__(self) -> dict:
        """Pickle the module once: skorch would store ``module`` and ``module_`` apart."""
        state = super().__getstate__()
        state["cost_meter"] = None  # one call's measurement, not part of the model
        if state.get("module") is not None and state["module"] is getattr(self, "module_", None):
            state["module"] = _SAME_AS_FITTED
        return state

    def __setstate__(self, state: dict) -> None:
        shared = isinstance(state.get("module"), str) and state["module"] == _SAME_AS_FITTED
        super().__setstate__(state)
        if shared:
            self.module = self.module_

    def release(self) -> None:
        """Free what only training needs: gradients, optimizer state, device memory.

        The module waits on the CPU; :meth:`on_device` brings it to ``device`` for a
        prediction and back.
        """
        for p in self.module_.parameters():
            p.grad = None
        self.optimizer_.state.clear()
        self.cost_meter = None
        _runtime.park_on_cpu(self.module_, torch.device(self.device))

    @contextlib.contextmanager
    def on_device(self):
        """Run the block with the module on ``device``; back to the CPU afterwards."""
        device = torch.device(self.device)
        if device.type == "cpu":
            yield
            return
        self.module_.to(device)
        try:
            yield
        finally:
            _runtime.park_on_cpu(self.module_, device)

    @contextlib.contextmanager
    def computing_in(self, dtype: torch.dtype | None):
        """Run the block's passes under autocast to ``dtype`` (None: float32) instead of
        ``amp_dtype``, in this thread only (nothing of the net changes, so concurrent
        predictions cannot leave another dtype behind)."""
        token = _COMPUTING_IN.set((id(self), dtype))
        try:
            yield
        finally:
            _COMPUTING_IN.reset(token)

    def compute_dtype(self) -> torch.dtype | None:
        """The autocast dtype of this thread's passes: :meth:`computing_in`'s, else
        ``amp_dtype``."""
        override = _COMPUTING_IN.get()
        if override is not None and override[0] == id(self):
            return override[1]
        return self.amp_dtype

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Train up to ``max_epochs`` in all (a resumed history counts); flag a Ctrl-C.

        skorch ends training quietly on KeyboardInterrupt; ``interrupted_`` tells the
        caller that it was the user's, not early stopping.
        """
        self.interrupted_ = False
        if epochs is None:
            epochs = self.max_epochs - len(self.history)
        if epochs <= 0:
            return self
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except EarlyStop:
            raise
        except KeyboardInterrupt:
            self.interrupted_ = True
            raise

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        if training:
            for _, callback in self.callbacks_:
                hook = getattr(callback, "on_train_pass_end", None)
                if hook is not None:
                    hook(self)

    def infer(self, x, **fit_params):
        meter = getattr(self, "cost_meter", None)
        if meter is not None and isinstance(x, torch.Tensor):
            meter.count(self.module_, x, train=self.module_.training and
                        torch.is_grad_enabled())
        with _runtime.autocast(torch.device(self.device), self.compute_dtype()):
            out = super().infer(x, **fit_params)
        if isinstance(out, tuple):  # several outputs (domain adaptation's training pass)
            return tuple(o.float() for o in out)
        return out.float()


# classes that models pickled by earlier versions name at their former path here
__getattr__ = moved(__name__)
