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
    kind : {"cross_entropy", "bce", "mse", "huber"}
        Cross-entropy over classes, binary cross-entropy per label (multi-label,
        averaged over labels), squared error or Huber loss (averaged over outputs).
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy.
    """

    def __init__(self, kind: str = "cross_entropy", label_smoothing: float = 0.0):
        super().__init__()
        self.kind = kind
        self.label_smoothing = label_smoothing

    def per_example(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_pred = y_pred.float()
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
