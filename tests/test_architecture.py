"""The package's shape, as docs/architecture.md describes it, checked against the code.

The import graph comes from ``tools/import_graph.py``, which reads every module with ``ast``
(nothing is imported, so these tests take a second): the committed edge list and module
table are the code's, no modules import each other in a cycle (imports inside functions
count), the command line's command modules stay apart, and the architecture page names
every module and no module that does not exist.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import itertools
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "sktransfer"
PAGE = ROOT / "docs" / "architecture.md"
REGENERATE = "run `python tools/import_graph.py` (or `make architecture`) and commit what it writes"


def _load_tool():
    spec = importlib.util.spec_from_file_location("import_graph",
                                                  ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


ig = _load_tool()


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, str]]:
    return ig.import_graph(PACKAGE)


def short(module: str) -> str:
    return ig.short(module)


# --------------------------------------------------------------------------- (a) current
def test_edge_list_is_current(graph):
    committed = ig.read_edge_list(ig.EDGES.read_text()) if ig.EDGES.exists() else {}
    now = ig.read_edge_list(ig.edge_list(graph))
    old_lines = set(ig.edge_list(committed).splitlines())
    new_lines = set(ig.edge_list(now).splitlines())
    changes = [f"+ {line}" for line in sorted(new_lines - old_lines)]
    changes += [f"- {line}" for line in sorted(old_lines - new_lines)]
    shown = changes[:40] + ([f"... and {len(changes) - 40} more"] if len(changes) > 40 else [])
    assert not changes, (f"{ig.EDGES.relative_to(ROOT)} is not the code's import graph; "
                         f"{REGENERATE}. Changes (+ in the code, - only in the file):\n"
                         + "\n".join(shown))


def test_module_table_is_current(graph):
    committed = ig.TABLE.read_text() if ig.TABLE.exists() else ""
    assert committed == ig.module_table(PACKAGE, graph), (
        f"{ig.TABLE.relative_to(ROOT)} (the module table of docs/architecture.md) is not "
        f"the modules' docstrings; {REGENERATE}")


# --------------------------------------------------------------------------- (b) cycles
def test_no_import_cycles(graph):
    found = ig.cycles(graph)
    if found:
        sites = ig.import_sites(PACKAGE)
        lines = []
        for cycle in found:
            lines.append(" -> ".join(map(short, cycle)))
            for a, b in itertools.pairwise(cycle):
                lines.append(f"    {short(a)} -> {short(b)} ({graph[a][b]}): "
                             + ", ".join(sites.get((a, b), [])))
        pytest.fail("import cycles among sktransfer modules (imports inside functions "
                    "count):\n" + "\n".join(lines))


# --------------------------------------------------------------------------- (c) the CLI
def test_cli_command_modules_import_no_other_command(graph):
    commands = sorted(m for m in graph if fnmatch.fnmatchcase(short(m), "_cli_*")
                      and short(m) != "_cli_common")
    forbidden = {*commands, "sktransfer.cli"}
    wrong = [(a, b) for a in commands for b in graph[a] if b in forbidden]
    if wrong:
        sites = ig.import_sites(PACKAGE)
        wrong = [f"{short(a)} -> {short(b)} ({graph[a][b]}): {', '.join(sites[(a, b)])}"
                 for a, b in wrong]
    assert not wrong, ("a command module imports another command module or the CLI's "
                       "entry point (share code through _cli_common.py instead):\n"
                       + "\n".join(wrong))


# --------------------------------------------------------------------------- (d) the page
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
INCLUDE = re.compile(r"^```\{include\}\s+(\S+)", re.M)
OUTSIDE = ("tests/", "tools/", "docs/", "examples/", "benchmarks/")


def page_text() -> str:
    """The architecture page with the files it includes."""
    text = PAGE.read_text()
    return text + "".join((PAGE.parent / name).read_text() for name in INCLUDE.findall(text))


def code_tokens(text: str) -> set[str]:
    """Words of the page's inline code that could name a module or a file."""
    tokens = set()
    for span in CODE_SPAN.findall(text):
        for word in re.split(r"[\s,()\[\]=:'\"]+", span):
            word = word.rstrip(".")
            if re.fullmatch(r"[\w.*/-]+", word) and not re.fullmatch(r"[\d.]+", word):
                tokens.add(word)
    return tokens


def module_names(module: str, files: dict[str, Path]) -> set[str]:
    """The ways the page may name a module: dotted, relative dotted, or its file."""
    rel_file = files[module].relative_to(PACKAGE).as_posix()
    rel = short(module) if module != "sktransfer" else "__init__"
    names = {module, rel, rel_file, f"sktransfer/{rel_file}"}
    if rel_file.endswith("__init__.py"):
        folder = rel_file[: -len("__init__.py")]
        names |= {folder, folder.rstrip("/")} if folder else {"sktransfer"}
    return names


def defined_names(path: Path) -> set[str]:
    """The names a module defines at top level (type-checking imports included); all its
    string constants too when it serves attributes through a module ``__getattr__``."""
    tree = ast.parse(path.read_bytes())
    names: set[str] = set()

    def collect(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t)
                             if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                collect(node.body)
                collect(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    collect(handler.body)
                collect(getattr(node, "finalbody", []))

    collect(tree.body)
    if "__getattr__" in names:
        names.update(n.value for n in ast.walk(tree)
                     if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return names


def missing_reference(token: str, files: dict[str, Path]) -> str | None:
    """Why ``token`` names a module or file that does not exist; None if it exists or
    names no module."""
    rel_files = {path.relative_to(PACKAGE).as_posix() for path in files.values()}
    base_names = {name.rsplit("/", 1)[-1] for name in rel_files}
    if token.startswith(OUTSIDE):  # a file of the repository
        if "*" in token:
            return None if list(ROOT.glob(token)) else "matches no file"
        return None if (ROOT / token).exists() else "no such file"
    if token.endswith(".py") or "/" in token:  # a file of the package
        rel = token.removeprefix("sktransfer/")
        if rel.endswith("/"):
            return None if (PACKAGE / rel).is_dir() else "no such folder"
        if not rel.endswith(".py"):
            return None
        pool = rel_files if "/" in rel else base_names
        return None if any(fnmatch.fnmatchcase(f, rel) for f in pool) else "no such module"
    parts = token.split(".")
    top_level = {short(m).split(".")[0] for m in files}
    if parts[0] == "sktransfer":
        candidates = [parts]
    elif re.fullmatch(r"_[a-z]\w*", parts[0]) or parts[0] in top_level - {"sktransfer"}:
        # relative to the package, or a private module by its own name (``_timm``)
        candidates = [["sktransfer", *parts]]
        candidates += [m.split(".") + parts[1:] for m in files
                       if m.rsplit(".", 1)[-1] == parts[0] and m.count(".") > 1]
    else:
        return None  # not a module name (`fit`, `self`...)
    for candidate in candidates:
        for n in range(len(candidate), 0, -1):
            prefix = ".".join(candidate[:n])
            if prefix in files:
                rest = candidate[n:]
                if not rest or rest[0] in defined_names(files[prefix]):
                    return None
                break
    return "no such module (or no such name in it)"


def test_page_names_every_module():
    files = ig.module_files(PACKAGE)
    tokens = code_tokens(page_text())
    unnamed = [m for m in files if not module_names(m, files) & tokens]
    assert not unnamed, (f"{PAGE.relative_to(ROOT)} names no module {unnamed} (in inline "
                         f"code, by dotted or file name); {REGENERATE}, or name it on the page")


def test_page_names_no_missing_module():
    files = ig.module_files(PACKAGE)
    wrong = sorted(f"`{token}`: {why}" for token in code_tokens(page_text())
                   if (why := missing_reference(token, files)))
    assert not wrong, (f"{PAGE.relative_to(ROOT)} names modules or files that do not exist "
                       "(a private function's name counts: write it with its module, "
                       "`_module.function`):\n" + "\n".join(wrong))
