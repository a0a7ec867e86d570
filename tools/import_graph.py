"""The import graph of the ``sktransfer`` package, and the architecture picture drawn from it.

Every module under ``sktransfer/`` is parsed with :mod:`ast` (nothing is imported), so the
graph is the code's as it is on disk. An edge ``a -> b`` means module ``a`` imports module
``b``; it is ``"module"``-level when the import runs as ``a`` is imported (top level, class
bodies, ``try`` blocks...) and ``"function"``-level when it runs inside a function. Imports
under ``if TYPE_CHECKING:`` are ignored; ``importlib.import_module`` and ``__import__`` calls
with string literals count as imports.

Run as a script::

    python tools/import_graph.py

it rewrites, from the code as it is now:

- ``docs/images/architecture.svg``: the package in its layers, with its import edges;
- ``docs/images/architecture_edges.txt``: the same graph as text (``tests/test_architecture.py``
  compares it with the code);
- ``docs/images/architecture_modules.md.inc``: the table of modules and what each owns (the
  first sentence of its docstring), included by ``docs/architecture.md``.

The output is deterministic: unchanged code gives identical bytes.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import itertools
import re
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = ROOT / "sktransfer"
IMAGES = ROOT / "docs" / "images"
SVG = IMAGES / "architecture.svg"
EDGES = IMAGES / "architecture_edges.txt"
TABLE = IMAGES / "architecture_modules.md.inc"

MODULE = "module"
FUNCTION = "function"

# The layers of docs/architecture.md, bottom up, as patterns on module names relative to
# the package ("sktransfer" is the package's __init__). A module that matches no pattern
# takes the lowest layer its imports allow (computed from the graph); a module inside a
# subpackage takes its subpackage's layer.
DESIGN: list[tuple[str, list[str]]] = [
    ("Foundations", ["images", "io", "errors", "_runtime", "_cost", "_cache", "_meta",
                     "_seeding", "_validation", "_moved", "folders", "datasets", "_dask",
                     "_dask_worker", "_dask_plugin"]),
    ("Backbones", ["backbones", "backbones.*", "_tv_segmentation", "zoo"]),
    ("Training machinery", ["_plan", "_training", "_losses", "_schedules", "_batchnorm",
                            "_resume", "_lr_finder"]),
    ("Estimators", ["_base", "_finetune_base", "_finetune", "_regressor", "_segmenter",
                    "_fcn", "_masks", "_segmentation_data", "_iou", "_adaptation", "_domain",
                    "_domain_options", "_signals", "_unlabelled", "_extractor",
                    "_finetune_docs"]),
    ("Front doors", ["sktransfer", "__main__", "cli", "_cli_*", "dask", "_parquet_job",
                     "exchange", "extractor", "finetune", "regressor"]),
]


# --------------------------------------------------------------------------- the graph
def module_files(package_root: str | Path) -> dict[str, Path]:
    """Every module of a package, by dotted name.

    Parameters
    ----------
    package_root : str or Path
        The package's folder, e.g. ``sktransfer/``; its name is the package's name.

    Returns
    -------
    modules : dict of str to Path
        ``"sktransfer"`` for ``__init__.py``, ``"sktransfer.backbones._timm"`` for
        ``backbones/_timm.py``... in sorted order. Editor and temporary files (names that
        are not Python identifiers) and ``__pycache__`` are skipped.
    """
    root = Path(package_root).resolve()
    found: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if not all(part.isidentifier() for part in parts) or "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((root.name, *parts))] = path
    return dict(sorted(found.items()))


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    """The imports of one module: ``(name, level, from_names, kind, line)`` in order."""

    def __init__(self) -> None:
        self.depth = 0
        self.found: list[tuple[str, int, list[str] | None, str, int]] = []

    @property
    def kind(self) -> str:
        return FUNCTION if self.depth else MODULE

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, 0, None, self.kind, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node.module or "", node.level, [a.name for a in node.names],
                           self.kind, node.lineno))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                text = target.value
                level = len(text) - len(text.lstrip("."))
                anchor = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "package"), None)
                if name == "import_module" and level and not (
                        isinstance(anchor, ast.Name) and anchor.id in ("__name__",
                                                                        "__package__")):
                    if isinstance(anchor, ast.Constant) and isinstance(anchor.value, str):
                        text, level = f"{anchor.value}.{text[level:]}", 0
                    else:
                        text = ""  # relative to something unknown: cannot resolve
                if text:
                    # import_module(".x", __name__) is relative to the module itself
                    anchored = isinstance(anchor, ast.Name) and anchor.id == "__name__"
                    self.found.append((text[level:], -level if anchored else level, None,
                                       self.kind, node.lineno))
        self.generic_visit(node)


def _resolve(importer: str, is_package: bool, name: str, level: int) -> str:
    """The absolute dotted name of ``name`` imported with ``level`` dots from ``importer``.

    A negative level counts from the importer itself (``import_module(".x", __name__)``).
    """
    if level == 0:
        return name
    if level < 0:
        base = importer.split(".")
        level = -level
        base = base[:len(base) - level + 1]
    else:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - level + 1]
    return ".".join([*base, name] if name else base)


def _walk(package_root: str | Path):
    files = module_files(package_root)
    package = Path(package_root).resolve().name
    graph: dict[str, dict[str, str]] = {name: {} for name in files}
    unresolved: list[str] = []
    sites: dict[tuple[str, str], list[str]] = {}

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    def add(importer: str, target: str, kind: str, where: str) -> None:
        if target == importer:
            return
        if graph[importer].get(target) != MODULE:
            graph[importer][target] = kind
        if where not in sites.setdefault((importer, target), []):
            sites[(importer, target)].append(where)

    root = Path(package_root).resolve()
    for importer, path in files.items():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except SyntaxError as exc:
            raise SyntaxError(f"{path}: {exc}") from exc
        visitor = _Imports()
        visitor.visit(tree)
        is_package = path.name == "__init__.py"
        for name, level, from_names, kind, line in visitor.found:
            where = f"{root.name}/{path.relative_to(root).as_posix()}:{line}"
            base = _resolve(importer, is_package, name, level)
            if not inside(base):
                continue
            if from_names is None:  # import a.b.c, import_module("a.b.c")
                if base in files:
                    add(importer, base, kind, where)
                else:
                    unresolved.append(f"{where}: {base}")
                continue
            for from_name in from_names:
                sub = f"{base}.{from_name}"
                if sub in files:
                    add(importer, sub, kind, where)
                elif base in files:
                    add(importer, base, kind, where)
                else:
                    unresolved.append(f"{where}: {sub}")
    graph = {k: dict(sorted(v.items())) for k, v in graph.items()}
    return graph, sorted(set(unresolved)), sites


def scan(package_root: str | Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The import graph, and the imports of package modules that name no module.

    Parameters
    ----------
    package_root : str or Path
        The package's folder.

    Returns
    -------
    graph : dict of str to dict of str to str
        See :func:`import_graph`.
    unresolved : list of str
        ``"file:line: name"`` for each import inside the package that matches no module
        file (a module being moved, or a broken import).
    """
    graph, unresolved, _ = _walk(package_root)
    return graph, unresolved


def import_sites(package_root: str | Path = PACKAGE_ROOT) -> dict[tuple[str, str], list[str]]:
    """Where each import of the graph is written.

    Parameters
    ----------
    package_root : str or Path, default=sktransfer/
        The package's folder.

    Returns
    -------
    sites : dict of (str, str) to list of str
        For each edge ``(importer, imported)``, the ``"sktransfer/file.py:line"`` of
        every statement or call that makes it.
    """
    return _walk(package_root)[2]


def import_graph(package_root: str | Path = PACKAGE_ROOT) -> dict[str, dict[str, str]]:
    """The imports between a package's modules, read from its source.

    Parameters
    ----------
    package_root : str or Path, default=sktransfer/
        The package's folder.

    Returns
    -------
    graph : dict of str to dict of str to str
        For every module (dotted name, sorted), the modules of the package it imports,
        each marked ``"module"`` (imported when the module is imported) or ``"function"``
        (imported inside a function only). Imports under ``if TYPE_CHECKING:`` are left
        out; ``from pkg import sub`` names the submodule ``pkg.sub`` when it is one.
    """
    return scan(package_root)[0]


def edges(graph: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """The graph's edges ``(importer, imported, kind)``, sorted.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.

    Returns
    -------
    edges : list of tuple of (str, str, str)
        One per pair of modules.
    """
    return [(a, b, kind) for a in sorted(graph) for b, kind in sorted(graph[a].items())]


def strongly_connected(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The graph's strongly connected components (Tarjan), each sorted, in sorted order.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it; edges of both kinds count.

    Returns
    -------
    components : list of list of str
        Every module is in exactly one component; a component of more than one module is
        a set of modules that import each other through a cycle.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def cycles(graph: dict[str, dict[str, str]], limit: int = 1000) -> list[list[str]]:
    """The elementary import cycles, function-level imports included.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.
    limit : int, default=1000
        Stop after this many cycles (a tangled package can have very many).

    Returns
    -------
    cycles : list of list of str
        Each cycle as the modules along it, starting from its smallest name and ending
        where it starts (``[a, b, a]``); sorted. Empty when the graph has no cycle.
    """
    found: list[list[str]] = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for start in component:  # cycles whose smallest module is `start`
            allowed = {m for m in members if m >= start}
            path = [start]
            work = [iter(sorted(n for n in graph[start] if n in allowed))]
            while work and len(found) < limit:
                for nxt in work[-1]:
                    if nxt == start:
                        found.append([*path, start])
                    elif nxt not in path:
                        path.append(nxt)
                        work.append(iter(sorted(n for n in graph[nxt] if n in allowed)))
                        break
                else:
                    work.pop()
                    path.pop()
    return sorted(found)


def layers(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Modules in layers computed from the graph alone, bottom up.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it; edges of both kinds count.

    Returns
    -------
    layers : list of list of str
        Layer 0 holds the modules that import no module of the package; every other
        module sits one layer above the highest module it imports. Modules in a cycle
        share a layer.
    """
    component_of = {m: i for i, comp in enumerate(strongly_connected(graph)) for m in comp}
    members: dict[int, list[str]] = {}
    for module, i in component_of.items():
        members.setdefault(i, []).append(module)
    height: dict[int, int] = {}

    def level(i: int) -> int:
        if i not in height:
            height[i] = -1  # in progress (cannot recur: components form a DAG)
            below = {component_of[d] for m in members[i] for d in graph[m]
                     if d in component_of} - {i}
            height[i] = 1 + max((level(j) for j in sorted(below)), default=-1)
        return height[i]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    result: list[list[str]] = []
    for i in sorted(members):
        h = level(i)
        while len(result) <= h:
            result.append([])
        result[h].extend(members[i])
    return [sorted(layer) for layer in result]


# --------------------------------------------------------------------------- the design
def short(module: str) -> str:
    """A module's name inside its top package: ``"backbones._timm"``; the package itself
    keeps its name (``"sktransfer"``)."""
    head, _, rest = module.partition(".")
    return rest or head


def design_layers(graph: dict[str, dict[str, str]]) -> dict[str, int]:
    """Each module's layer in :data:`DESIGN` (0 = foundations ... 4 = front doors).

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.

    Returns
    -------
    placement : dict of str to int
        Declared modules take their declared layer, modules of a subpackage their
        subpackage's, and any other module the lowest layer at or above every module it
        imports (module-level imports; modules in a cycle are placed together).
    """
    placement: dict[str, int] = {}
    for module in graph:
        name = short(module)
        for i, (_, patterns) in enumerate(DESIGN):
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                placement[module] = i
                break
    for module in graph:  # a subpackage's modules go where the subpackage goes
        parts = module.split(".")
        for n in range(len(parts) - 1, 1, -1):
            parent = ".".join(parts[:n])
            if module not in placement and parent in placement:
                placement[module] = placement[parent]
    for layer in layers(graph):  # bottom up: the rest above what they import
        for module in layer:
            if module not in placement:
                placement[module] = max((placement.get(d, 0) for d in graph[module]),
                                        default=0)
    return dict(sorted(placement.items()))


def upward(graph: dict[str, dict[str, str]],
           placement: dict[str, int]) -> list[tuple[str, str, str]]:
    """The edges that import from a higher layer than the importer's.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.
    placement : dict of str to int
        As :func:`design_layers` returns it.

    Returns
    -------
    edges : list of tuple of (str, str, str)
        ``(importer, imported, kind)``, sorted.
    """
    return [(a, b, k) for a, b, k in edges(graph) if placement[b] > placement[a]]


# --------------------------------------------------------------------------- text outputs
def edge_list(graph: dict[str, dict[str, str]]) -> str:
    """The graph as the text of ``docs/images/architecture_edges.txt``.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.

    Returns
    -------
    text : str
        The modules, one per line, then one line per edge:
        ``importer -> imported (module|function)``.
    """
    lines = ["# Generated by tools/import_graph.py from the code; do not edit.",
             "# modules"]
    lines += sorted(graph)
    lines.append("# imports: importer -> imported (module: at import time; "
                 "function: inside a function)")
    lines += [f"{a} -> {b} ({kind})" for a, b, kind in edges(graph)]
    return "\n".join(lines) + "\n"


def read_edge_list(text: str) -> dict[str, dict[str, str]]:
    """The graph back from :func:`edge_list`'s text.

    Parameters
    ----------
    text : str
        The text of an edge list.

    Returns
    -------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.
    """
    graph: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(\S+) -> (\S+) \((\w+)\)", line)
        if match:
            graph.setdefault(match[1], {})[match[2]] = match[3]
        else:
            graph.setdefault(line, {})
    return graph


def _rst_to_markdown(text: str) -> str:
    text = re.sub(r":\w+:`~?[^`<]*<([^`>]*)>`", r"`\1`", text)  # :role:`text <target>`
    text = re.sub(r":\w+:`~([^`]*)`", lambda m: f"`{m[1].rsplit('.', 1)[-1]}`", text)
    text = re.sub(r":\w+:`\.?([^`]*)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text.replace("|", "\\|")


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, as Markdown.

    Parameters
    ----------
    path : Path
        A module's file.

    Returns
    -------
    sentence : str
        Empty when the module has no docstring.
    """
    doc = ast.get_docstring(ast.parse(path.read_bytes())) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(?:\s+[A-Z(`:]|$)", paragraph)
    return _rst_to_markdown(match[1] if match else paragraph)


def file_name(module: str, files: dict[str, Path], package_root: Path) -> str:
    """A module's file relative to the package folder: ``backbones/_timm.py``."""
    return files[module].relative_to(package_root.resolve()).as_posix()


def module_table(package_root: str | Path = PACKAGE_ROOT,
                 graph: dict[str, dict[str, str]] | None = None) -> str:
    """The Markdown table of every module, its layer and what it owns.

    Parameters
    ----------
    package_root : str or Path, default=sktransfer/
        The package's folder.
    graph : dict of str to dict of str to str, optional
        As :func:`import_graph` returns it; computed when not given.

    Returns
    -------
    text : str
        The content of ``docs/images/architecture_modules.md.inc``.
    """
    package_root = Path(package_root)
    graph = import_graph(package_root) if graph is None else graph
    files = module_files(package_root)
    placement = design_layers(graph)
    rows = ["<!-- Generated by tools/import_graph.py from the modules' docstrings. -->", "",
            "| Layer | Module | Owns |", "|---|---|---|"]
    for module in sorted(graph, key=lambda m: (placement[m], files[m].parent != Path(
            package_root).resolve(), m)):
        rows.append(f"| {placement[module] + 1} {DESIGN[placement[module]][0]} | "
                    f"`{file_name(module, files, package_root)}` | {summary(files[module])} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- the picture
def _order(rows: list[list[str]], below: dict[str, float], graph) -> list[list[str]]:
    """Order each row by the mean position of what its modules import (barycentre)."""
    out = []
    for row in rows:
        def key(m: str, row=row) -> tuple[float, str]:
            xs = [below[d] for d in graph.get(m, {}) if d in below]
            return (sum(xs) / len(xs) if xs else (len(row) - 1) / 2, m)
        out.append(sorted(row, key=key))
    return out


def draw(graph: dict[str, dict[str, str]], path: str | Path = SVG) -> None:
    """Draw the package in its layers, with its imports, into an SVG file.

    Parameters
    ----------
    graph : dict of str to dict of str to str
        As :func:`import_graph` returns it.
    path : str or Path, default=docs/images/architecture.svg
        Where to write the picture; the same graph always gives the same bytes.

    Notes
    -----
    Each layer of :data:`DESIGN` is a band, bottom up; a subpackage is one box listing
    its modules, and drawn again on the right with its own imports. Grey arrows are
    imports at import time, dashed ones imports inside functions; orange arrows import
    from a higher layer, red ones are part of an import cycle.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, Rectangle

    plt.rcParams.update({"svg.hashsalt": "sktransfer-architecture", "font.size": 8,
                         "font.family": "DejaVu Sans", "svg.fonttype": "path"})
    package = min(graph, key=len)
    placement = design_layers(graph)
    cyclic = {(a, b) for cycle in cycles(graph) for a, b in itertools.pairwise(cycle)}
    climbing = {(a, b) for a, b, _ in upward(graph, placement)}

    # collapse subpackages into one node
    def node_of(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else module

    subpackages = sorted({node_of(m) for m in graph if len(m.split(".")) > 2})
    members = {p: sorted(m for m in graph if m == p or m.startswith(p + ".")) for p in subpackages}
    nodes = sorted({node_of(m) for m in graph})
    collapsed: dict[str, dict[str, str]] = {n: {} for n in nodes}
    style: dict[tuple[str, str], str] = {}
    for a, b, kind in edges(graph):
        na, nb = node_of(a), node_of(b)
        if na == nb:
            continue
        if collapsed[na].get(nb) != MODULE:
            collapsed[na][nb] = kind
        flag = "cycle" if (a, b) in cyclic else "up" if (a, b) in climbing else ""
        rank = {"cycle": 2, "up": 1, "": 0}
        if rank[flag] >= rank[style.get((na, nb), "")]:
            style[(na, nb)] = flag
    band_of = {n: placement.get(n, placement[members[n][-1]] if n in members else 0)
               for n in nodes}

    # rows: each band split into rows of at most `width` nodes, ordered by barycentre
    width = 7
    box_w, box_h, gap_x, row_h, band_gap = 2.05, 0.42, 0.35, 0.95, 0.55
    positions: dict[str, tuple[float, float]] = {}
    heights: dict[str, float] = {}
    y = 0.0
    band_extent: list[tuple[float, float]] = []
    for band in range(len(DESIGN)):
        in_band = [n for n in nodes if band_of[n] == band]
        inner = layers({n: {d: k for d, k in collapsed[n].items() if d in in_band}
                        for n in in_band}) if in_band else []
        flat = [n for layer in inner for n in layer]
        rows = [flat[i:i + width] for i in range(0, len(flat), width)]
        rows = _order(rows, {n: positions[n][0] for n in positions}, collapsed)
        top = y
        y += band_gap
        for row in rows:
            tallest = max(box_h + (0.15 * len(members[n]) if n in members else 0)
                          for n in row)
            span = len(row) * box_w + (len(row) - 1) * gap_x
            for i, n in enumerate(row):
                h = box_h + (0.15 * len(members[n]) if n in members else 0)
                x = -span / 2 + i * (box_w + gap_x) + box_w / 2
                positions[n] = (x, y + tallest / 2)
                heights[n] = h
            y += tallest + row_h - box_h
        y += 0.05
        band_extent.append((top, y))

    full = width * box_w + (width - 1) * gap_x
    left, right = -full / 2 - 1.9, full / 2 + 0.3
    inset_w = 6.2 if subpackages else 0
    fig_w = right - left + inset_w
    fig, ax = plt.subplots(figsize=(fig_w * 0.72, (y + 0.9) * 0.72))
    ax.set_xlim(left, right + inset_w)
    ax.set_ylim(-0.1, y + 0.8)
    ax.axis("off")
    band_colors = ["#e8f1fb", "#eaf6ea", "#fdf3e3", "#f3ebf8", "#fbeaea"]
    edge_colors = ["#4a7ab5", "#4b9a4b", "#c58a2c", "#8a5cad", "#b55a5a"]
    for band, (name, _) in enumerate(DESIGN):
        lo, hi = band_extent[band]
        ax.add_patch(Rectangle((left + 0.05, lo + 0.1), right - left - 0.1, hi - lo - 0.15,
                               facecolor=band_colors[band], edgecolor="none", zorder=0))
        ax.text(left + 0.2, (lo + hi) / 2, f"{band + 1}\n" + name.replace(" ", "\n"),
                ha="left", va="center",
                fontsize=9, fontweight="bold", color=edge_colors[band])
    ax.text((left + right) / 2, y + 0.45,
            f"{package}: imports between modules, computed by tools/import_graph.py",
            ha="center", va="center", fontsize=11, fontweight="bold")

    def box(n: str, label: str, x: float, yc: float, h: float, color: str,
            listing: list[str] | None = None) -> None:
        ax.add_patch(Rectangle((x - box_w / 2, yc - h / 2), box_w, h, facecolor="white",
                               edgecolor=color, linewidth=1.0, zorder=3))
        if listing is None:
            ax.text(x, yc, label, ha="center", va="center", zorder=4, fontsize=8)
        else:
            ax.text(x, yc + h / 2 - 0.08, label, ha="center", va="top", zorder=4,
                    fontsize=8, fontweight="bold")
            ax.text(x, yc + h / 2 - 0.34, "\n".join(listing), ha="center", va="top",
                    zorder=4, fontsize=6.5, linespacing=1.25, color="#333333")

    for n in nodes:
        x, yc = positions[n]
        label = short(n) if n != package else f"{package} (__init__)"
        if n in members:
            listing = [short(m).split(".", 1)[1] if "." in short(m) else "__init__"
                       for m in members[n]]
            box(n, f"{short(n)}/", x, yc, heights[n], edge_colors[band_of[n]], listing)
        else:
            box(n, label, x, yc, heights[n], edge_colors[band_of[n]])

    def arrow(p: tuple[float, float], q: tuple[float, float], hp: float, hq: float,
              kind: str, flag: str, rad: float) -> None:
        (x1, y1), (x2, y2) = p, q
        if abs(y1 - y2) > 1e-6:  # leave and enter through the facing sides
            s = 1 if y2 > y1 else -1
            y1, y2 = y1 + s * hp / 2, y2 - s * hq / 2
        else:  # same row: an arc over the row, as flat as the distance allows
            y1, y2 = y1 + hp / 2, y2 + hq / 2
            rad = (-1 if x2 > x1 else 1) * min(0.35, 0.7 / max(abs(x2 - x1), 1e-6))
        color = {"cycle": "#d62728", "up": "#ff7f0e"}.get(flag, "#777777")
        ax.add_patch(FancyArrowPatch(
            (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=7,
            connectionstyle=f"arc3,rad={rad}", color=color,
            linewidth=1.4 if flag else 0.55, alpha=0.95 if flag else 0.45,
            linestyle="--" if kind == FUNCTION else "-", zorder=2 if flag else 1,
            shrinkA=0, shrinkB=1))

    for a, b, kind in edges(collapsed):  # a constant rad: a -> b and b -> a bulge apart
        arrow(positions[a], positions[b], heights[a], heights[b], kind,
              style.get((a, b), ""), 0.08)

    # legend
    handles = [Line2D([], [], color="#777777", lw=1, label="import at import time"),
               Line2D([], [], color="#777777", lw=1, ls="--", label="import inside a function"),
               Line2D([], [], color="#ff7f0e", lw=1.6, label="imports from a higher layer"),
               Line2D([], [], color="#d62728", lw=1.6, label="part of an import cycle")]
    ax.legend(handles=handles, loc="upper right", ncol=2, fontsize=7, frameon=False)

    # each subpackage's insides, on the right
    if subpackages:
        ix0 = right + 0.5
        iy = y - 0.5
        for sub in subpackages:
            inner_graph = {m: {d: k for d, k in graph[m].items() if d in members[sub]}
                           for m in members[sub]}
            inner_layers = layers(inner_graph)
            outside = sorted({short(d) for m in members[sub] for d in graph[m]
                              if d not in members[sub]})
            users = sorted({short(node_of(m)) for m in graph for d in graph[m]
                            if d in members[sub] and m not in members[sub]})
            ax.text(ix0 + inset_w / 2 - 0.25, iy, f"inside {short(sub)}/", ha="center",
                    va="top", fontsize=10, fontweight="bold")
            iy -= 0.55
            spots: dict[str, tuple[float, float]] = {}
            cols = 2
            w2 = (inset_w - 0.9) / cols
            for layer in reversed(inner_layers):  # top of the panel = highest layer
                for start in range(0, len(layer), cols):
                    chunk = layer[start:start + cols]
                    for i, m in enumerate(chunk):
                        spots[m] = (ix0 + 0.15 + w2 * (i + 0.5) + (cols - len(chunk)) * w2 / 2,
                                    iy - box_h / 2)
                    iy -= 0.85
            for m, (x, yc) in spots.items():
                label = "__init__" if m == sub else short(m).split(".", 1)[1]
                ax.add_patch(Rectangle((x - w2 / 2 + 0.12, yc - box_h / 2), w2 - 0.24, box_h,
                                       facecolor="white", edgecolor=edge_colors[band_of[sub]],
                                       linewidth=1.0, zorder=3))
                ax.text(x, yc, label, ha="center", va="center", zorder=4)
            for a, b, kind in edges(inner_graph):
                flag = "cycle" if (a, b) in cyclic else ""
                arrow(spots[a], spots[b], box_h, box_h, kind, flag, 0.12)
            note = (f"imports from outside: {', '.join(outside) or 'nothing'}\n"
                    f"imported by: {', '.join(users) or 'nothing'}")
            wrapped = "\n".join(textwrap.fill(line, 58, subsequent_indent="   ")
                                for line in note.splitlines())
            ax.text(ix0 + 0.1, iy + 0.2, wrapped, ha="left", va="top", fontsize=6.5,
                    color="#333333")
            iy -= 0.3 + 0.2 * wrapped.count("\n") + 0.6
    fig.tight_layout(pad=0.2)
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


# --------------------------------------------------------------------------- the script
def write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it holds it already; whether it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def report(graph: dict[str, dict[str, str]], unresolved: Iterable[str]) -> list[str]:
    """Lines worth a contributor's attention: cycles, upward imports, broken imports."""
    lines = [f"import cycle: {' -> '.join(map(short, c))}" for c in cycles(graph)]
    lines += [f"imports from a higher layer: {short(a)} -> {short(b)} ({k})"
              for a, b, k in upward(graph, design_layers(graph))]
    lines += [f"import of no module: {u}" for u in unresolved]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Rewrite the picture, the edge list and the module table from the code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=PACKAGE_ROOT,
                        help="the package folder (default: sktransfer/)")
    parser.add_argument("--out", type=Path, default=IMAGES,
                        help="where to write the outputs (default: docs/images/)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    graph, unresolved = scan(args.package)
    args.out.mkdir(parents=True, exist_ok=True)
    changed = [name for name, text in [
        (EDGES.name, edge_list(graph)), (TABLE.name, module_table(args.package, graph))]
        if write(args.out / name, text)]
    svg = args.out / SVG.name
    before = svg.read_bytes() if svg.exists() else None
    draw(graph, svg)
    if svg.read_bytes() != before:
        changed.append(SVG.name)
    if not args.quiet:
        for line in report(graph, unresolved):
            print(line, file=sys.stderr)
        n_edges = sum(len(v) for v in graph.values())
        print(f"{len(graph)} modules, {n_edges} imports; "
              f"{'rewrote ' + ', '.join(changed) if changed else 'unchanged'} in {args.out} "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
