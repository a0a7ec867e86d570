"""Training pieces of domain adaptation: gradient reversal, the domain head (DANN), the
CORAL loss, minimum class confusion (MCC), the adaptation-weight schedule, source/target
balanced batches, and the skorch net that adds the adaptation loss to the classification
loss.

Rows of the training data whose encoded label is negative are unlabelled target images;
the others are labelled source images. Target rows never reach the classification loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.utils import to_tensor
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler

from ._domain_options import (  # noqa: F401  (re-exported)
    ADAPTATION_METHODS,
    ADAPTATION_SCHEDULES,
    FEATURE_METHODS,
)
from ._training import AmpNet, ImageDataset, TransferNet


# --------------------------------------------------------------------------- pieces
class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity on the forward pass; multiplies the gradient by ``-coeff`` on the way back.

    Ganin & Lempitsky's gradient reversal layer: the domain head below it learns to tell
    the domains apart while the features above it learn to make that impossible.
    """
    return _ReverseGradient.apply(x, float(coeff))


def ganin_weight(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's ramp ``2 / (1 + exp(-gamma * p)) - 1`` of training progress
    ``p`` in [0, 1]: 0 at the start, close to 1 from about a third of training on (with
    ``gamma=10``), which keeps the domain signal from swamping the early, noisy features."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL's loss: ``||C_s - C_t||_F^2 / (4 d^2)`` between feature covariances.

    ``source`` and ``target`` are ``(n, d)`` feature batches; zero when either has fewer
    than 2 rows (no covariance to compare).
    """
    d = source.shape[1]
    if len(source) < 2 or len(target) < 2:
        return source.sum() * 0.0
    diff = torch.cov(source.T) - torch.cov(target.T)
    return (diff * diff).sum() / (4.0 * d * d)


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al. 2020) of a batch of target logits.

    The class-confusion matrix ``C = P^T W P`` of the temperature-scaled probabilities
    ``P``, each row weighted by ``1 + exp(-entropy)`` (confident rows count more, weights
    summing to the batch size), its rows normalised to sum to 1; the loss is the mass
    off the diagonal over the number of classes: 0 when no two classes are ever predicted
    together for the same image, towards ``(C - 1) / C`` when the predictions are uniform.
    Unlike entropy minimisation it does not reward putting every image in one class:
    the rows of the unused classes then hold nothing but their confusion with the used
    one, and the loss is near its maximum too.
    """
    n, n_classes = logits.shape
    if n < 2:
        return logits.sum() * 0.0
    p = torch.softmax(logits.float() / temperature, dim=1)
    entropy = -(p * torch.log(p + 1e-7)).sum(dim=1)
    w = 1.0 + torch.exp(-entropy)
    w = n * w / w.sum()
    confusion = (p * w[:, None]).T @ p
    confusion = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return (confusion.sum() - torch.trace(confusion)) / n_classes


class DANNAdapter(nn.Module):
    """DANN's domain head on the pooled features, behind a gradient reversal.

    Two hidden layers of ``hidden`` units with ReLU (Ganin et al.'s domain classifier for
    real images) and one logit: positive means "target". The head trains on the full
    binary cross-entropy; the features receive its gradient reversed and scaled by the
    adaptation weight.
    """

    def __init__(self, num_features: int, hidden: int):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(num_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    stats = ("domain_loss", "domain_acc")

    def forward(self, logits: torch.Tensor, features: torch.Tensor, is_target: torch.Tensor,
                weight: float) -> tuple[torch.Tensor, dict]:
        domain = self.classifier(reverse_gradient(features, weight)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(domain, is_target)
        accuracy = ((domain > 0).float() == is_target).float().mean()
        return loss, {"domain_loss": loss.item(), "domain_acc": accuracy.item()}


class CoralAdapter(nn.Module):
    """Deep CORAL on the pooled features: ``weight * coral_loss(source, target)``."""

    stats = ("domain_loss",)

    def forward(self, logits: torch.Tensor, features: torch.Tensor, is_target: torch.Tensor,
                weight: float) -> tuple[torch.Tensor, dict]:
        target = is_target > 0.5
        loss = coral_loss(features[~target].float(), features[target].float())
        return weight * loss, {"domain_loss": loss.item()}


class MCCAdapter(nn.Module):
    """Minimum class confusion on the target rows' logits: ``weight * mcc_loss``.

    It trains the head as well as the body, so it adapts even with a frozen body.
    """

    stats = ("confusion_loss",)

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, features: torch.Tensor, is_target: torch.Tensor,
                weight: float) -> tuple[torch.Tensor, dict]:
        loss = mcc_loss(logits[is_target > 0.5], self.temperature)
        return weight * loss, {"confusion_loss": loss.item()}


class SumAdapter(nn.Module):
    """Several adapters' losses summed (``method="dann+mcc"``)."""

    def __init__(self, *adapters: nn.Module):
        super().__init__()
        self.parts = nn.ModuleList(adapters)

    def forward(self, logits: torch.Tensor, features: torch.Tensor, is_target: torch.Tensor,
                weight: float) -> tuple[torch.Tensor, dict]:
        total, stats = 0.0, {}
        for part in self.parts:
            loss, part_stats = part(logits, features, is_target, weight)
            total = total + loss
            stats.update(part_stats)
        return total, stats


_ADAPTERS = {"dann": DANNAdapter, "coral": CoralAdapter, "mcc": MCCAdapter}


def make_adapter(method: str, num_features: int, hidden: int,
                 temperature: float = 2.5) -> nn.Module:
    """The adapter of ``method`` (one of :data:`ADAPTATION_METHODS`)."""
    arguments = {"dann": (num_features, hidden), "coral": (), "mcc": (temperature,)}
    parts = [_ADAPTERS[name](*arguments[name]) for name in method.split("+")]
    return parts[0] if len(parts) == 1 else SumAdapter(*parts)


def adapter_stats(method: str) -> tuple[str, ...]:
    """The history columns ``method``'s adapter records (without building it: building
    DANN's head would draw from the seeded generator)."""
    return tuple(name for part in method.split("+") for name in _ADAPTERS[part].stats)


class DomainTransferNet(TransferNet):
    """A :class:`TransferNet` with an ``adapter``; while training it returns
    ``(logits, pooled features)`` so that the net can add the domain loss."""

    def __init__(self, body: nn.Module, num_features: int, n_outputs: int, prep,
                 adapter: nn.Module, channels_last: bool = False, batchnorm: str = "train"):
        super().__init__(body, num_features, n_outputs, prep, channels_last=channels_last,
                         batchnorm=batchnorm)
        self.adapter = adapter

    def forward(self, x: torch.Tensor):
        if self.training and x.ndim == 4:
            features = self.features(x)
            return self.head(features), features
        return super().forward(x)


# --------------------------------------------------------------------------- batches
def domain_positions(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``dataset`` of its labelled (source) and unlabelled (target) items."""
    labels = np.asarray(dataset.targets)[np.asarray(dataset.indices, dtype=np.int64)]
    return np.flatnonzero(labels >= 0), np.flatnonzero(labels < 0)


class BalancedBatches(Sampler):
    """Batches of up to ``batch_size`` source items plus as many target items.

    An epoch is one shuffled pass over the source items (so epochs mean what they mean
    for :class:`~sktransfer.FineTuneClassifier`); target items follow in shuffled order
    without replacement, reshuffled when used up (a small target set repeats, a large
    one is sampled). Shuffles draw their seed from torch's global generator, as
    ``RandomSampler`` does, so a seeded fit repeats exactly.
    """

    def __init__(self, source: np.ndarray, target: np.ndarray, batch_size: int):
        if not len(source) or not len(target):
            raise ValueError("balanced batches need source and target items")
        self.source, self.target = np.asarray(source), np.asarray(target)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.source) / self.batch_size)

    def __iter__(self):
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        gen = torch.Generator().manual_seed(seed)
        order = self.source[torch.randperm(len(self.source), generator=gen).numpy()]
        stream: list[int] = []
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size].tolist()
            while len(stream) < len(chunk):
                stream += self.target[torch.randperm(len(self.target),
                                                     generator=gen).numpy()].tolist()
            yield chunk + stream[:len(chunk)]
            stream = stream[len(chunk):]


# --------------------------------------------------------------------------- net
class DomainNet(AmpNet):
    """The skorch net of domain adaptation.

    Training batches are balanced (:class:`BalancedBatches`) when the data hold target
    items; the loss is the classification loss of the labelled rows plus the
    ``module_.adapter``'s adaptation loss at the current ``adaptation_weight_`` (set per
    batch by :class:`AdaptationSchedule`). Per batch it records ``source_loss`` and the
    adapter's figures in the history: ``domain_loss`` (DANN, CORAL), ``domain_acc``
    (DANN), ``confusion_loss`` (MCC).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adaptation_weight_ = 0.0

    def get_iterator(self, dataset, training: bool = False):
        if training and isinstance(dataset, ImageDataset) and dataset.targets is not None:
            source, target = domain_positions(dataset)
            if len(target) and len(source):
                kwargs = self.get_params_for("iterator_train")
                for name in ("batch_size", "shuffle", "sampler", "drop_last"):
                    kwargs.pop(name, None)
                return DataLoader(dataset, batch_sampler=BalancedBatches(
                    source, target, self.batch_size), **kwargs)
        return super().get_iterator(dataset, training=training)

    def get_loss(self, y_pred, y_true, X=None, training: bool = False):
        if not isinstance(y_pred, tuple):
            return super().get_loss(y_pred, y_true, X=X, training=training)
        logits, features = y_pred
        y_true = to_tensor(y_true, device=self.device)
        labelled = y_true["y"] >= 0
        loss = self.criterion_(logits[labelled], {"y": y_true["y"][labelled],
                                                  "w": y_true["w"][labelled]})
        stats = {"source_loss": loss.item()}
        if not bool(labelled.all()):
            is_target = (~labelled).float()
            domain_loss, domain_stats = self.module_.adapter(
                logits, features, is_target, self.adaptation_weight_)
            loss = loss + domain_loss
            stats.update(domain_stats)
        if training and len(self.history) and self.history[-1]["batches"]:
            for name, value in stats.items():
                self.history.record_batch(name, value)
        return loss


class AdaptationSchedule(Callback):
    """Sets ``net.adaptation_weight_`` before every training batch.

    ``weight * ganin_weight(p, gamma)`` (``schedule="ganin"``) or ``weight``
    (``"constant"``), ``p`` being the fraction of the ``max_epochs`` budget's training
    batches done. It is read from the history, so a resumed fit continues the ramp. The
    weight in force at the end of each epoch is recorded as ``adaptation_weight``.
    """

    def __init__(self, weight: float, schedule: str = "ganin", gamma: float = 10.0):
        self.weight, self.schedule, self.gamma = weight, schedule, gamma

    def on_train_begin(self, net, X=None, y=None, **kwargs) -> None:
        n_source = len(domain_positions(X)[0]) if isinstance(X, ImageDataset) else 1
        self.steps_per_epoch_ = max(1, math.ceil(n_source / net.batch_size))

    def on_batch_begin(self, net, batch=None, training: bool = False, **kwargs) -> None:
        if not training:
            return
        done = ((len(net.history) - 1) * self.steps_per_epoch_
                + len(net.history[-1]["batches"]) - 1)
        progress = min(1.0, done / (net.max_epochs * self.steps_per_epoch_))
        ramp = ganin_weight(progress, self.gamma) if self.schedule == "ganin" else 1.0
        net.adaptation_weight_ = self.weight * ramp

    def on_epoch_end(self, net, **kwargs) -> None:
        net.history.record("adaptation_weight", float(net.adaptation_weight_))
