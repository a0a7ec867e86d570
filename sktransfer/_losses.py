"""The training losses: every one a weighted mean, so sample weights mean the same in all
estimators (:class:`WeightedLoss` per example, :class:`PixelLoss` per annotated pixel).

Adaptation's extra terms (adversarial, CORAL, MCC) belong to their adapters in
:mod:`sktransfer._domain`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class WeightedLoss(nn.Module):
    """Per-example loss averaged with example weights: ``sum(w * loss) / sum(w)``.

    The weighted mean equals the plain mean over a data set in which every example is
    repeated in proportion to its weight (sample weights times class weights).

    Parameters
    ----------
    kind : {"cross_entropy", "bce", "mse", "huber", "multitask"}
        Cross-entropy over classes, binary cross-entropy per label (multi-label,
        averaged over labels), squared error or Huber loss (averaged over outputs), or
        one cross-entropy per target column (multi-output: the outputs split into
        ``sizes``), weighted by ``task_weights`` and summed; a column's ``-1`` (no
        label) leaves its term out.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy.
    sizes, task_weights : tuple, default=()
        For ``"multitask"``: the number of classes of each column and its weight.
    """

    def __init__(self, kind: str = "cross_entropy", label_smoothing: float = 0.0,
                 sizes: tuple[int, ...] = (), task_weights: tuple[float, ...] = ()):
        super().__init__()
        self.kind = kind
        self.label_smoothing = label_smoothing
        self.sizes, self.task_weights = tuple(sizes), tuple(task_weights)

    def per_example(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_pred = y_pred.float()
        if self.kind == "multitask":  # one cross-entropy per column, -1: no label there
            total = y_pred.new_zeros(len(y_pred))
            for j, logits in enumerate(torch.split(y_pred, self.sizes, dim=1)):
                total = total + self.task_weights[j] * F.cross_entropy(
                    logits, y[:, j], reduction="none", ignore_index=-1,
                    label_smoothing=self.label_smoothing)
            return total
        if self.kind == "cross_entropy":
            return F.cross_entropy(y_pred, y, reduction="none",
                                   label_smoothing=self.label_smoothing)
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(y_pred, y, reduction="none").mean(1)
        if self.kind == "mse":
            return F.mse_loss(y_pred, y, reduction="none").mean(1)
        if self.kind == "huber":
            return F.huber_loss(y_pred, y, reduction="none").mean(1)
        raise ValueError(f"unknown loss {self.kind!r}")

    def forward(self, y_pred: torch.Tensor, target: dict) -> torch.Tensor:
        losses = self.per_example(y_pred, target["y"])
        w = target["w"].to(losses.dtype)
        total = w.sum()
        if total <= 0:  # a batch of zero-weight examples teaches nothing
            return (losses * w).sum()
        return (losses * w).sum() / total


class DistillationLoss(WeightedLoss):
    """Knowledge distillation (Hinton et al. 2015): per example,
    ``(1 - weight) * cross_entropy(y) + weight * T**2 * KL(teacher_T || student_T)``,
    where ``student_T`` is the softmax of the logits over ``T`` and ``teacher_T`` the
    teacher's probabilities softened the same way (``p ** (1 / T)`` renormalised, which is
    the softmax of the teacher's logits over ``T``). A row without a label (``y = -1``)
    has the distillation term only. ``T**2`` keeps the gradient scale of the soft term
    independent of ``T``. Without the teacher's probabilities in the batch (the
    learning-rate finder's), it is the cross-entropy of the labelled rows.
    """

    def __init__(self, temperature: float = 2.0, weight: float = 0.5,
                 label_smoothing: float = 0.0):
        super().__init__("cross_entropy", label_smoothing)
        self.temperature, self.weight = float(temperature), float(weight)

    def forward(self, y_pred: torch.Tensor, target: dict) -> torch.Tensor:
        z = y_pred.float()
        y = target["y"]
        labelled = (y >= 0).to(z.dtype)
        hard = F.cross_entropy(z, y.clamp_min(0), reduction="none",
                               label_smoothing=self.label_smoothing) * labelled
        w = target["w"].to(z.dtype)
        if "teacher" not in target:
            losses, w = hard, w * labelled
        else:
            t = self.temperature
            soft_teacher = torch.softmax(torch.log(target["teacher"].float().clamp_min(
                torch.finfo(torch.float32).tiny)) / t, dim=1)
            kl = F.kl_div(torch.log_softmax(z / t, dim=1), soft_teacher,
                          reduction="none").sum(1) * t * t
            hard_weight = torch.where(labelled > 0, 1.0 - self.weight, 0.0)
            soft_weight = torch.where(labelled > 0, self.weight, 1.0)
            losses = hard_weight * hard + soft_weight * kl
        total = w.sum()
        if total <= 0:
            return (losses * w).sum()
        return (losses * w).sum() / total


class PixelLoss(nn.Module):
    """Per-pixel cross-entropy; ``ignore_index`` pixels count nowhere.

    With image weights ``w``, the loss is ``sum_i w_i sum_p l_ip / sum_i w_i n_i`` over
    the ``n_i`` annotated pixels of each image ``i``: the mean over annotated pixels when
    every weight is 1.
    """

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, y_pred: torch.Tensor, target: dict) -> torch.Tensor:
        y = target["y"]
        losses = F.cross_entropy(y_pred.float(), y, ignore_index=self.ignore_index,
                                 reduction="none")
        weight = target["w"].to(losses.dtype).view(-1, 1, 1) * (y != self.ignore_index)
        total = weight.sum()
        if total <= 0:  # nothing annotated in this batch: no signal, zero gradient
            return (losses * weight).sum()
        return (losses * weight).sum() / total
