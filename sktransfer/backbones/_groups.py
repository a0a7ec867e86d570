"""Layer groups: a network's natural stages, stem first (ResNet, RegNet, DenseNet, VGG,
``features``-based, ViT, or its children), and the ``groups`` parameter parsed and checked."""

from __future__ import annotations

from torch import nn


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def default_groups(net: nn.Module) -> list[tuple[str, list[str]]]:
    """The natural stages of ``net``, stem first: ResNet-like, ``features``-based, or children."""
    if all(hasattr(net, a) for a in ("conv1", "layer1", "layer4")):  # ResNet / ResNeXt
        stem = [n for n in ("conv1", "bn1") if hasattr(net, n)]
        return [("stem", stem)] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]
    if hasattr(net, "stem") and hasattr(net, "trunk_output"):  # RegNet
        blocks = [f"trunk_output.{n}" for n, _ in net.trunk_output.named_children()]
        return [("stem", ["stem"])] + [(b, [b]) for b in blocks]
    attr = "features" if hasattr(net, "features") else "layers"
    features = getattr(net, attr, None)
    if isinstance(features, nn.Sequential) and not hasattr(net, "encoder"):
        children = list(features.named_children())
        if any(n.startswith("denseblock") for n, _ in children):  # DenseNet
            groups: list[tuple[str, list[str]]] = [("stem", [])]
            for name, _ in children:
                if name.startswith("denseblock"):
                    groups.append((name, []))
                groups[-1][1].append(f"features.{name}")
            return groups
        if any(isinstance(m, nn.MaxPool2d) for _, m in children):  # VGG/AlexNet: pool-ended
            blocks: list[tuple[str, list[str]]] = [(f"block{1}", [])]
            for name, module in children:
                blocks[-1][1].append(f"{attr}.{name}")
                if isinstance(module, nn.MaxPool2d):
                    blocks.append((f"block{len(blocks) + 1}", []))
            return [(g, m) for g, m in blocks if m]
        names = [f"{attr}.{n}" for n, m in children if _has_params(m)]
        return [(n, [n]) for n in names]
    if hasattr(net, "encoder") and hasattr(net.encoder, "layers"):  # ViT
        prefix = [n for n in ("conv_proj",) if hasattr(net, n)]
        layers = [f"encoder.layers.{n}" for n, _ in net.encoder.layers.named_children()]
        return [("stem", prefix)] + [(n, [n]) for n in layers] + [("encoder.ln", ["encoder.ln"])]
    return _generic_groups(net)


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _generic_groups(net: nn.Module) -> list[tuple[str, list[str]]]:
    """Top-level children with parameters, in order; a ModuleList of blocks is expanded
    into its blocks, and a normalisation layer joins the group before it (a conv and its
    BatchNorm train together)."""
    units: list[tuple[str, nn.Module]] = []
    for name, child in net.named_children():
        if isinstance(child, nn.ModuleList):
            units += [(f"{name}.{n}", m) for n, m in child.named_children()]
        else:
            units.append((name, child))
    groups: list[tuple[str, list[str]]] = []
    for name, module in units:
        if not _has_params(module):
            continue
        if isinstance(module, _NORMS) and groups:
            groups[-1][1].append(name)
        else:
            groups.append((name, [name]))
    return groups


def parse_groups(groups: list | dict) -> list[tuple[str, list[str]]]:
    """The ``groups`` parameter as ``(name, submodule names)`` pairs, stem first."""
    items = groups.items() if isinstance(groups, dict) else (
        (g if isinstance(g, str) else "+".join(g), g) for g in groups)
    return [(str(k), [v] if isinstance(v, str) else list(v)) for k, v in items]


def check_groups(net: nn.Module, groups: list[tuple[str, list[str]]]) -> None:
    """Raise a clear error if a group names a submodule (or parameter) that ``net`` lacks."""
    names = {**dict(net.named_modules()), **dict(net.named_parameters())}
    for group, members in groups:
        for member in members:
            if member not in names:
                raise ValueError(
                    f"Layer group {group!r} names {member!r}, which is not a submodule; "
                    f"top-level children are {[n for n, _ in net.named_children()]}"
                )
