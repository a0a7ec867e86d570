"""The package's layout keeps its promises: models saved by the previous version load,
every moved class loads from its former path, and the public names are one list, each
in its module's ``__all__`` and on the API page."""

from __future__ import annotations

import ast
import importlib
import io
import json
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

import sktransfer
from sktransfer._moved import MOVED

ROOT = Path(__file__).parents[1]
SAVED = Path(__file__).parent / "data" / "previous_version"
CLASSES = json.loads((SAVED / "classes.json").read_text())
API_PAGE = (ROOT / "docs" / "api.md").read_text()
DOCUMENTED = re.findall(r"\.\. auto(?:class|function|exception|data):: (\S+)", API_PAGE)


def _quietly(load, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # classes served from old paths
        return load(*args)


@pytest.mark.parametrize("name", [n for n, v in CLASSES.items() if v["method"]])
def test_models_saved_by_the_previous_version_load_and_give_the_same_outputs(name):
    model = _quietly(joblib.load, SAVED / f"{name}.joblib")
    X = np.load(SAVED / "X.npy")
    out = getattr(model, CLASSES[name]["method"])(X)
    out = np.stack(out) if isinstance(out, list) else out
    np.testing.assert_allclose(out, np.load(SAVED / f"{name}.npy"), rtol=1e-4, atol=1e-5)
    assert type(model) is getattr(sktransfer, type(model).__name__)


@pytest.mark.parametrize("name", list(CLASSES))
def test_every_class_a_previous_pickle_names_resolves(name):
    """Also for a model too large to keep (a torchvision segmentation model's)."""
    unpickler = pickle.Unpickler(io.BytesIO(b""))
    for module, attr in CLASSES[name]["classes"]:
        assert _quietly(unpickler.find_class, module, attr) is not None, (module, attr)


@pytest.mark.parametrize("old, name, new", [(old, name, new) for old, names in MOVED.items()
                                            for name, new in names.items()])
def test_every_moved_name_loads_from_its_former_path(old, name, new):
    unpickler = pickle.Unpickler(io.BytesIO(b""))
    with pytest.warns(DeprecationWarning, match=f"{re.escape(old)}.{name} moved"):
        value = unpickler.find_class(old, name)
    assert value is getattr(importlib.import_module(new), name)
    if isinstance(value, type) or callable(value):
        assert value.__module__ == new
    with pytest.raises(AttributeError, match="'Other'"):
        unpickler.find_class(old, "Other")


def _public_modules() -> list[str]:
    """Every module of the package whose dotted path has no private part."""
    names = []
    for path in sorted((ROOT / "sktransfer").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def _is_documented(module: str, name: str) -> bool:
    if f"{module}.{name}" in DOCUMENTED:
        return True
    value = getattr(importlib.import_module(module), name)  # or documented at the top
    return name in sktransfer.__all__ and getattr(sktransfer, name) is value and \
        f"sktransfer.{name}" in DOCUMENTED


@pytest.mark.parametrize("module", _public_modules())
def test_public_modules_declare_all_and_document_each_name(module):
    mod = _quietly(importlib.import_module, module)
    assert isinstance(getattr(mod, "__all__", None), list), f"{module} has no __all__"
    assert len(set(mod.__all__)) == len(mod.__all__)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert missing == [], f"{module}.__all__ names what it lacks: {missing}"
    undocumented = [n for n in mod.__all__ if not _is_documented(module, n)]
    assert undocumented == [], f"not on docs/api.md: {undocumented}"


def test_every_name_on_the_api_page_is_public():
    for target in DOCUMENTED:
        module, _, name = target.rpartition(".")
        assert name in importlib.import_module(module).__all__, target


def test_the_type_checking_block_lists_exactly_the_public_names():
    """The TYPE_CHECKING imports (for type checkers) say what _EXPORTS says (at run time)."""
    tree = ast.parse((ROOT / "sktransfer" / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING")
    imports = {}
    for node in block.body:
        for alias in node.names:
            assert alias.asname in (None, alias.name), f"{alias.name} re-exported as another name"
            imports[alias.name] = node.module
    assert imports == sktransfer._EXPORTS


def test_public_names_resolve_and_importing_the_package_loads_no_torch():
    for name in sktransfer.__all__:
        value = getattr(sktransfer, name)
        module = importlib.import_module(f"sktransfer.{sktransfer._EXPORTS[name]}")
        assert getattr(module, name) is value
        assert name in dir(sktransfer)
    with pytest.raises(AttributeError, match="'Nothing'"):
        sktransfer.Nothing  # noqa: B018
    code = ("import sys, sktransfer, sktransfer.cli, sktransfer.errors; "
            "print(sorted(m for m in ('torch', 'sklearn', 'skorch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
