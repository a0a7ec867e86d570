"""Training pieces behind FineTuneClassifier: the network, its data, its skorch callbacks."""

from __future__ import annotations

import contextlib

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from . import _runtime
from ._resume import EarlyStop
from .images import ImageSource, Preprocessing

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class TransferNet(nn.Module):
    """A pretrained body with a new linear head.

    BatchNorm layers whose parameters are frozen stay in eval mode whenever the network is
    put in training mode, so their running statistics never drift (skorch calls
    ``train()`` at every training step; this is where that is undone).
    """

    def __init__(self, body: nn.Module, num_features: int, n_classes: int, prep: Preprocessing,
                 channels_last: bool = False):
        super().__init__()
        self.body = body
        self.head = nn.Linear(num_features, n_classes)
        self.prep = prep
        self.channels_last = channels_last
        if channels_last:
            self.body.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Batches arrive resized but not normalised (uint8 where possible: 4x less to copy
        # to the device); normalisation runs on the device, batch by batch.
        x = self.prep.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.body(x))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if mode:
            body_frozen = not any(p.requires_grad for p in self.body.parameters())
            for module in self.body.modules():
                if isinstance(module, _BN):
                    params = list(module.parameters())
                    frozen = (not any(p.requires_grad for p in params)) if params else body_frozen
                    if frozen:
                        module.eval()
        return self


def default_augmentation(crop_size: int) -> T.Compose:
    """Random resized crop, horizontal flip and mild colour jitter."""
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=(0.6, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.2, 0.2, 0.2),
    ])


class ImageDataset(Dataset):
    """Items of an :class:`ImageSource`, resized and cropped (and augmented when training).

    Items are ``(3, S, S)`` uint8 tensors (float in ``[0, 1]`` for float inputs);
    :class:`TransferNet` normalises whole batches on the device.
    """

    def __init__(self, source: ImageSource, prep: Preprocessing, y=None, indices=None,
                 augment=None):
        self.source, self.prep, self.y, self.augment = source, prep, y, augment
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        img = self.source.read(index)
        if self.augment is not None:
            img = self.augment(img)
            if isinstance(img, torch.Tensor) and img.shape[-1] != self.prep.crop_size:
                img = self.prep.resize_crop(img)
            elif not isinstance(img, torch.Tensor) and img.size != (self.prep.crop_size,) * 2:
                img = self.prep.resize_crop(img)
        else:
            img = self.prep.resize_crop(img)
        if not isinstance(img, torch.Tensor):
            img = TF.pil_to_tensor(img)
        if img.dtype != torch.uint8:
            img = img.float()  # float images in [0, 1]; TransferNet normalises
        target = -1 if self.y is None else int(self.y[index])
        return img, target


class GroupUnfreezer(Callback):
    """Two-phase schedule: the head alone for ``freeze_epochs``, then ``groups`` unfreeze.

    At the switch the optimizer is rebuilt, so training continues with fresh state.
    """

    def __init__(self, trainable: list[str], freeze_epochs: int):
        self.trainable = trainable
        self.freeze_epochs = freeze_epochs

    def _set(self, net, unfrozen: bool) -> None:
        module = net.module_
        for p in module.body.parameters():
            p.requires_grad_(False)
        if unfrozen:
            for name, p in module.named_parameters():
                if any(name.startswith(prefix) for prefix in self.trainable):
                    p.requires_grad_(True)
        for p in module.head.parameters():
            p.requires_grad_(True)

    def on_train_begin(self, net, **kwargs) -> None:
        # a resumed fit may already be past the switch
        self._set(net, unfrozen=len(net.history) >= self.freeze_epochs)
        net.initialize_optimizer()

    def on_epoch_begin(self, net, **kwargs) -> None:
        epoch = len(net.history)  # 1-based, the current epoch has been appended
        if self.freeze_epochs and epoch == self.freeze_epochs + 1:
            self._set(net, unfrozen=True)
            net.initialize_optimizer()


_SAME_AS_FITTED = "<module_>"  # placeholder for the init module when it is the fitted one


class AmpNet(NeuralNetClassifier):
    """skorch classifier running forward passes under autocast (bf16 on GPU)."""

    def __init__(self, *args, amp_dtype: torch.dtype | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp_dtype = amp_dtype

    def __getstate__(self) -> dict:
        """Pickle the module once: skorch would store ``module`` and ``module_`` apart."""
        state = super().__getstate__()
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

    def infer(self, x, **fit_params):
        with _runtime.autocast(torch.device(self.device), self.amp_dtype):
            out = super().infer(x, **fit_params)
        return out.float()
