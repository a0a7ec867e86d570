"""BatchNorm statistics that match fine-tuned weights.

A BatchNorm layer that trains normalises each batch with the batch's own statistics and
updates its running statistics (used at prediction) with a momentum. Pretrained layers
often have a small momentum (0.01 in EfficientNet-Lite), so after a short fine-tuning the
running statistics still describe the pretraining data, not the fine-tuned network: the
model learns, its predictions do not. Recalibration recomputes them over the training
images after training (as :func:`torch.optim.swa_utils.update_bn` does): one forward pass
without gradients, in training mode for exactly the BatchNorm layers that trained.
"""

from __future__ import annotations

import torch
from skorch.callbacks import Callback
from torch import nn

from . import _runtime
from ._training import BN_TYPES


def trained_batchnorms(module: nn.Module) -> list[nn.Module]:
    """BatchNorm layers with running statistics that the training mode would update."""
    was_training = module.training
    module.train()  # TransferNet.train() leaves frozen BatchNorm layers in eval mode
    layers = [m for m in module.modules()
              if isinstance(m, BN_TYPES) and m.training and m.track_running_stats]
    module.train(was_training)
    return layers


def recalibrate(net, dataset) -> int:
    """Recompute the running statistics of the trained BatchNorm layers of ``net.module_``.

    Parameters
    ----------
    net : AmpNet
        An initialised net; its module is left in eval mode.
    dataset : ImageDataset
        The training images, without augmentation.

    Returns
    -------
    int
        The number of recalibrated layers (no forward pass runs when it is 0).
    """
    module = net.module_
    layers = trained_batchnorms(module)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    module.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    device = torch.device(net.device)
    try:
        # DataLoaders draw a seed from the global RNG: fork it, so that recalibrating
        # changes neither the caller's random state nor the training's
        with torch.no_grad(), _runtime.autocast(device, net.compute_dtype()), \
                torch.random.fork_rng(devices=[]):
            for x, _ in net.get_iterator(dataset, training=False):
                meter = getattr(net, "cost_meter", None)
                if meter is not None:
                    meter.count(module, x, train=False)
                module(x.to(device, non_blocking=True))
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        module.eval()
    return len(layers)


class BatchNormRecalibration(Callback):
    """Recalibrate after every training pass, before the validation pass scores the epoch.

    So the validation loss, early stopping and the best weights kept all see statistics
    that match the weights of their epoch.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_train_pass_end(self, net) -> None:
        recalibrate(net, self.dataset)
