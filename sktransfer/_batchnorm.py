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

#: Images per batch of :func:`match_statistics`' target pass: the larger, the closer to
#: exact (see there). A pass without gradients keeps about two layers' activations: at
#: 224 px for EfficientNet-B0's first layers, about 0.8 GB in float32 (half in bf16).
MATCH_BATCH = 256


def trained_batchnorms(module: nn.Module) -> list[nn.Module]:
    """BatchNorm layers with running statistics that the training mode would update."""
    was_training = module.training
    module.train()  # TransferNet.train() leaves frozen BatchNorm layers in eval mode
    layers = [m for m in module.modules()
              if isinstance(m, BN_TYPES) and m.training and m.track_running_stats]
    module.train(was_training)
    return layers


def all_batchnorms(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer with running statistics, trained or not."""
    return [m for m in module.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]


def recalibrate(net, dataset, which: str = "trained") -> int:
    """Recompute the running statistics of the BatchNorm layers of ``net.module_``.

    Parameters
    ----------
    net : AmpNet
        An initialised net; its module is left in eval mode.
    dataset : ImageDataset
        The images whose statistics to take (the training images, without
        augmentation; the target images for AdaBN).
    which : {"trained", "all"}, default="trained"
        The layers that trained (:func:`trained_batchnorms`), or every BatchNorm layer
        (AdaBN, Li et al. 2016: the statistics of the domain to predict on, in every
        layer, the pretrained ones included).

    Returns
    -------
    int
        The number of recalibrated layers (no forward pass runs when it is 0).
    """
    module = net.module_
    layers = trained_batchnorms(module) if which == "trained" else all_batchnorms(module)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    module.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    try:
        _forward_all(net, dataset)
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


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel sum and sum of squares of a BatchNorm input (channels on dim 1), and
    the count of values per channel. Reduced in float32 where the input lives (no copy
    in float64: MPS has no float64, and a 256-image batch's early layers are large),
    returned in float64 on the CPU, where they accumulate."""
    x = x.detach().float()
    dims = [d for d in range(x.ndim) if d != 1]
    total = x.sum(dim=dims)
    squares = (x * x).sum(dim=dims)
    return total.double().cpu(), squares.double().cpu(), x.numel() // x.shape[1]


class _Moments:
    def __init__(self):
        self.total = self.squares = None
        self.count = 0

    def add(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, squares, count = _moments(x)
        if self.total is None:
            self.total, self.squares = total, squares
        else:
            self.total, self.squares = self.total + total, self.squares + squares
        self.count += count
        return _mean_var(total, squares, count)

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _mean_var(self.total, self.squares, self.count)


def _mean_var(total, squares, count) -> tuple[torch.Tensor, torch.Tensor]:
    mean = total / count
    return mean, (squares / count - mean * mean).clamp_min(0.0)


def _matched(layer: nn.Module, source: tuple, target: tuple,
             original: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Running statistics under which ``layer`` maps target inputs (moments ``target``)
    to what it made of source inputs (moments ``source``) under its ``original``
    statistics: the same per-channel mean and spread after normalisation."""
    (mu_s, var_s), (mu_t, var_t), (m, v) = source, target, original
    m, v = m.detach().double().cpu(), v.detach().double().cpu()
    sd_s, sd_t = var_s.sqrt(), var_t.sqrt()
    live = sd_s > 1e-5  # a channel constant on the source keeps its statistics
    scale = torch.where(live, sd_t / sd_s.clamp_min(1e-5), torch.ones_like(sd_s))
    new_m = torch.where(live, mu_t - scale * (mu_s - m), m)
    new_v = ((v + layer.eps) * scale * scale - layer.eps).clamp_min(0.0)
    mean, var = layer.running_mean, layer.running_var
    return (new_m.to(device=mean.device, dtype=mean.dtype),
            new_v.to(device=var.device, dtype=var.dtype))


def match_statistics(net, source_dataset, target_dataset,
                     batch_size: int = MATCH_BATCH) -> int:
    """Source-matched AdaBN: running statistics of every BatchNorm layer under which
    target images are normalised as the source images were.

    AdaBN (Li et al. 2016) replaces each layer's statistics with the target domain's, so
    that both domains come out of every BatchNorm layer standardised. That presumes the
    network was trained on standardised source activations; one trained with frozen
    pretrained statistics (``batchnorm="frozen"``) saw its source activations in
    another place and scale, and plain AdaBN then moves the target away from what the
    later layers learned. Here each layer gets the statistics that give the target's
    normalised activations the per-channel mean and spread that the source's had under
    the trained statistics. On source-like inputs the statistics are unchanged.

    Two passes without gradients in eval mode: one over the source, recording each
    layer's input moments; one over the target in batches of up to ``batch_size``
    images, each layer matched on the batch's own moments (as training mode uses batch
    statistics) before the next layer sees its output; the cumulative moments then give
    the final statistics. With the whole target in one batch that is exact (matching a
    domain to itself changes nothing); smaller batches add their sampling noise, hence
    large ones (measured on EfficientNet-Lite0: batches of 32 moved the source's own
    probabilities by 0.02 on average, one batch by 0).

    Parameters
    ----------
    net : AmpNet
        An initialised net; its module is left in eval mode.
    source_dataset, target_dataset : ImageDataset
        Images of the domain the network was trained on, and of the one to predict on
        (without augmentation).
    batch_size : int, default=MATCH_BATCH
        Images per batch of the target pass.

    Returns
    -------
    int
        The number of layers matched.
    """
    module = net.module_
    layers = all_batchnorms(module)
    if not layers:
        return 0
    original = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    position = {id(m): k for k, m in enumerate(layers)}
    source = {id(m): _Moments() for m in layers}
    target = {id(m): _Moments() for m in layers}

    # A FLOP count runs a copy of the network (on the meta device, or a CPU copy): its
    # layers carry these hooks too, and are ignored.
    def record(layer, args):
        if id(layer) in source and not args[0].is_meta:
            source[id(layer)].add(args[0])

    def adapt(layer, args):
        if id(layer) not in target or args[0].is_meta or not source[id(layer)].count:
            return
        batch = target[id(layer)].add(args[0])
        mean, var = _matched(layer, source[id(layer)].mean_var(), batch,
                             original[position[id(layer)]])
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)

    try:
        for dataset, hook, size in ((source_dataset, record, net.batch_size),
                                    (target_dataset, adapt, batch_size)):
            handles = [m.register_forward_pre_hook(hook) for m in layers]
            module.eval()
            try:
                _forward_all(net, dataset, size)
            finally:
                for h in handles:
                    h.remove()
        for k, m in enumerate(layers):
            if not source[id(m)].count or not target[id(m)].count:
                continue  # a layer the forward pass never reached keeps its statistics
            mean, var = _matched(m, source[id(m)].mean_var(), target[id(m)].mean_var(),
                                 original[k])
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
    except BaseException:
        for m, (mean, var) in zip(layers, original, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
        raise
    return len(layers)


def _forward_all(net, dataset, batch_size: int | None = None) -> None:
    """One pass of ``net.module_`` (in the modes its layers are in) over ``dataset`` in
    batches of ``batch_size`` (the net's when None), without gradients, in the net's
    precision. DataLoaders draw a seed from the global RNG: it is forked, so that the
    pass changes neither the caller's random state nor a training's."""
    kept = net.batch_size
    net.batch_size = int(batch_size or kept)
    try:
        batches = net.get_iterator(dataset, training=False)
    finally:
        net.batch_size = kept
    module, device = net.module_, torch.device(net.device)
    meter = getattr(net, "cost_meter", None)
    with torch.no_grad(), _runtime.autocast(device, net.compute_dtype()), \
            torch.random.fork_rng(devices=[]):
        for x, _ in batches:
            if meter is not None:
                meter.count(module, x, train=False)
            module(x.to(device, non_blocking=True))
