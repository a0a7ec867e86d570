"""Learning rates over layers and over time: layer-wise rates and per-batch schedules.

Layer-wise rates: the head trains at ``lr`` and the group ``d`` levels below it at
``lr * factor ** d``. By default the factor spreads the rates geometrically from the head
down to ``lr / LR_SPREAD`` at the stem, whatever the number of groups (fastai's
``slice(lr / 100, lr)`` idea), so a backbone with many groups does not starve its lower
ones.

Schedules multiply every parameter group's rate by the same factor at every training
batch, so the ratios between groups hold throughout; each training phase (head only,
then unfrozen) runs its own schedule from the start.
"""

from __future__ import annotations

import math

from skorch.callbacks import Callback

SCHEDULES = ("onecycle", "cosine", "constant")
#: Ratio between the head's rate and the stem's when ``lr_decay`` is not given.
LR_SPREAD = 100.0
#: One-cycle: share of the steps spent warming up, start and end rate divisors (fastai's).
ONECYCLE_PCT_START, ONECYCLE_DIV, ONECYCLE_DIV_FINAL = 0.25, 25.0, 1e5
#: Cosine: share of the steps spent in linear warm-up.
COSINE_WARMUP = 0.1


def layer_factor(lr_decay: float | None, n_groups: int) -> float:
    """Factor between the rates of consecutive layer groups.

    ``lr_decay`` when given; otherwise ``LR_SPREAD ** (-1 / n_groups)``, so that the stem
    (``n_groups`` levels below the head) trains at ``lr / LR_SPREAD``.
    """
    if lr_decay is not None:
        return float(lr_decay)
    return LR_SPREAD ** (-1.0 / max(n_groups, 1))


def _cos(start: float, end: float, t: float) -> float:
    """Cosine interpolation from ``start`` (t=0) to ``end`` (t=1)."""
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2


def schedule_factor(kind: str, step: int, total: int) -> float:
    """Multiplier of the base rates at ``step`` (0-based) of a phase of ``total`` steps.

    ``"onecycle"``: cosine warm-up from 1/25 to 1 over the first quarter, then cosine
    annealing to 1e-5 (fastai's ``fit_one_cycle`` without its momentum cycle);
    ``"cosine"``: linear warm-up over the first tenth, then cosine annealing to 0;
    ``"constant"``: 1.
    """
    if kind == "constant" or total <= 1:
        return 1.0
    t = min(step, total - 1) / (total - 1)
    if kind == "onecycle":
        if t < ONECYCLE_PCT_START:
            return _cos(1 / ONECYCLE_DIV, 1.0, t / ONECYCLE_PCT_START)
        return _cos(1.0, 1 / ONECYCLE_DIV_FINAL,
                    (t - ONECYCLE_PCT_START) / (1 - ONECYCLE_PCT_START))
    if kind == "cosine":
        warm = max(1, round(COSINE_WARMUP * total))
        if step < warm:
            return (step + 1) / warm
        return _cos(1.0, 0.0, (step - warm) / max(total - warm, 1))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


class LRSchedule(Callback):
    """Set every parameter group's rate at every training batch: base rate x factor.

    Parameters
    ----------
    kind : str
        One of :data:`SCHEDULES`.
    phase_epochs : int
        Epochs of the first (head-only) phase; 0 for a single phase. The second phase
        restarts the schedule.
    max_epochs : int
        Epochs of both phases together (the schedule plans for all of them even when
        early stopping ends training sooner).

    Notes
    -----
    The base rate of a group is its rate when the optimizer was built, kept in the
    group as ``"base_lr"`` (and so in checkpoints of the optimizer state). The step is
    derived from the history and the batch count, so a resumed fit continues the
    schedule exactly.
    """

    def __init__(self, kind: str, phase_epochs: int, max_epochs: int):
        self.kind = kind
        self.phase_epochs = phase_epochs
        self.max_epochs = max_epochs

    def on_train_begin(self, net, X=None, **kwargs) -> None:
        self.steps_per_epoch_ = max(1, math.ceil(len(X) / net.batch_size))
        self.batch_ = 0

    def on_epoch_begin(self, net, **kwargs) -> None:
        self.batch_ = 0

    def step_in_phase(self, epoch: int) -> tuple[int, int]:
        """(step within its phase, steps in that phase) of the current batch."""
        spe = self.steps_per_epoch_
        if epoch < self.phase_epochs:
            return epoch * spe + self.batch_, self.phase_epochs * spe
        return (epoch - self.phase_epochs) * spe + self.batch_, (
            self.max_epochs - self.phase_epochs) * spe

    def on_batch_begin(self, net, training: bool = False, **kwargs) -> None:
        if not training:
            return
        step, total = self.step_in_phase(len(net.history) - 1)
        factor = schedule_factor(self.kind, step, total)
        for group in net.optimizer_.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * factor
        self.batch_ += 1
