"""Which parameters train, at which learning rate and weight decay: one plan for everything.

:func:`training_plan` is the only place that turns ``unfreeze``, ``lr`` and ``lr_decay``
into per-parameter decisions. Its result feeds the unfreezing callback
(:func:`trained_after_warmup`), the optimizer's parameter groups
(:func:`optimizer_groups`) and :meth:`~sktransfer.FineTuneClassifier.summary`.

Weight decay follows timm's ``param_groups_weight_decay`` convention: biases and the
weights of normalisation layers (every parameter with fewer than 2 dimensions) are not
decayed; decaying them shrinks the BatchNorm scales towards 0 for no regularisation gain.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ._schedules import layer_factor

#: Name of the plan entry for body parameters outside every layer group (trained, at the
#: stem's rate, only with ``unfreeze="all"``).
OTHER = "other"
HEAD = "head"
#: Name of the plan entry holding the pretrained weights that adapters leave frozen.
FROZEN_BASE = "base (frozen)"
#: What the names of adapter parameters contain (:mod:`sktransfer._lora`).
ADAPTER_MARK = ".lora_"


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """What happens to one layer group's parameters.

    Attributes
    ----------
    group : str
        The layer group's name (stem first), :data:`OTHER` or :data:`HEAD`.
    names : tuple of str
        Its parameters' names in the network (``module.named_parameters()``).
    n_params : int
        Number of scalar parameters.
    trainable : bool
        Whether it trains (after the head-only warm-up for body groups).
    lr : float or None
        Its base learning rate (before the schedule); None when frozen.
    """

    group: str
    names: tuple[str, ...]
    n_params: int
    trainable: bool
    lr: float | None


def training_plan(module: nn.Module, groups: list[tuple[str, list[str]]], *,
                  unfreeze: int | str, lr: float, lr_decay: float | None,
                  adapters: bool = False) -> list[GroupPlan]:
    """The plan for a :class:`~sktransfer._training.TransferNet` ``module``.

    Parameters
    ----------
    module : TransferNet
        The network: a ``body`` (whose ``net`` holds the layer groups' modules) and a
        ``head``.
    groups : list of (str, list of str)
        Layer groups, stem first: a name and the submodule names (in ``body.net``) it holds.
    unfreeze : int or "all"
        How many groups, counted from the top, train; ``"all"``: every body parameter.
    lr : float
        The head's rate. Each group down from the head trains at ``lr_decay`` (see
        :func:`~sktransfer._schedules.layer_factor`) times the rate of the one above.
    lr_decay : float or None
        Factor between consecutive groups; None for the default spread.
    adapters : bool, default=False
        Low-rank adapters (:mod:`sktransfer._lora`): in the trained groups only their
        adapter parameters train; every other body parameter stays frozen, in the
        :data:`FROZEN_BASE` entry.

    Returns
    -------
    plan : list of GroupPlan
        One entry per layer group (stem first), then :data:`OTHER` (when some body
        parameters belong to no group), then with ``adapters`` :data:`FROZEN_BASE`, then
        :data:`HEAD`.
    """
    params = dict(module.named_parameters())
    n_train = len(groups) if unfreeze == "all" else int(unfreeze)
    factor = layer_factor(lr_decay, len(groups))
    taken: set[str] = set()
    plan = []
    for index, (name, members) in enumerate(groups):
        prefixes = tuple(f"body.net.{m}." for m in members)
        exact = {f"body.net.{m}" for m in members}  # a member may name one parameter
        names = tuple(n for n in params if (n.startswith(prefixes) or n in exact)
                      and n not in taken)
        taken.update(names)
        depth = len(groups) - index  # the top group is 1 below the head
        trainable = depth <= n_train
        plan.append(_entry(name, names, params, trainable, lr * factor ** depth))
    other = tuple(n for n in params if n.startswith("body.") and n not in taken)
    if other:
        plan.append(_entry(OTHER, other, params, unfreeze == "all",
                           lr * factor ** max(len(groups), 1)))
    if adapters:  # trained groups keep only their adapters; the rest is the frozen base
        base = []
        for i, entry in enumerate(plan):
            if entry.trainable:
                kept = tuple(n for n in entry.names if ADAPTER_MARK in n)
                base += [n for n in entry.names if ADAPTER_MARK not in n]
                plan[i] = _entry(entry.group, kept, params, bool(kept), entry.lr)
        plan.append(_entry(FROZEN_BASE, tuple(base), params, False, None))
    head = tuple(n for n in params if not n.startswith("body."))
    plan.append(_entry(HEAD, head, params, True, lr))
    return plan


def _entry(group, names, params, trainable, lr) -> GroupPlan:
    return GroupPlan(group, names, sum(params[n].numel() for n in names), trainable,
                     lr if trainable else None)


def trained_after_warmup(plan: list[GroupPlan]) -> frozenset[str]:
    """Names of the parameters that train once the head-only warm-up is over."""
    return frozenset(n for entry in plan if entry.trainable for n in entry.names)


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies: not to biases nor normalisation weights (1-d)."""
    return param.ndim > 1 and not name.endswith(".bias")


def optimizer_groups(plan: list[GroupPlan], named_parameters, weight_decay: float,
                     ) -> list[dict]:
    """torch optimizer parameter groups: per plan entry, decayed and not decayed.

    Frozen entries go in one group at the default rate (they receive no gradient; the
    optimizer is rebuilt when they unfreeze). Parameters the plan does not name (none,
    for a :class:`TransferNet`) join that group too.
    """
    params = dict(named_parameters)
    groups, rest = [], []
    for entry in plan:
        members = [(n, params.pop(n)) for n in entry.names if n in params]
        if not entry.trainable:
            rest.extend(p for _, p in members)
            continue
        for decayed in (True, False):
            chosen = [p for n, p in members if decays(n, p) == decayed]
            if chosen:
                groups.append({"params": chosen, "lr": entry.lr,
                               "weight_decay": weight_decay if decayed else 0.0})
    rest.extend(params.values())
    if rest:
        groups.append({"params": rest})
    return groups
