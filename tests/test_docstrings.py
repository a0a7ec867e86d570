"""The documented API has valid numpydoc docstrings, and the estimators' examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest
from sklearn.base import BaseEstimator

import sktransfer

numpydoc_validation = pytest.importorskip("numpydoc.validate")

API_PAGE = Path(__file__).parents[1] / "docs" / "api.md"
# As scikit-learn: no extended summary, See Also or Examples required on every function,
# and named Returns entries ("embeddings : ndarray ...") are the house style.
IGNORED = {"ES01", "SA01", "EX01", "GL08", "RT02"}
# every public estimator (scikit-learn estimator class among the public names)
ESTIMATORS = [name for name in sktransfer.__all__ if isinstance(getattr(sktransfer, name), type)
              and issubclass(getattr(sktransfer, name), BaseEstimator)]


def documented() -> list[str]:
    """Every object of the API page, and the public methods and properties of its classes."""
    names = []
    for target in re.findall(r"\.\. auto(?:class|function|exception):: (\S+)",
                             API_PAGE.read_text()):
        module, _, attr = target.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        names.append(target)
        if inspect.isclass(obj) and not issubclass(obj, Exception):
            names += [f"{target}.{name}" for name, value in vars(obj).items()
                      if not name.startswith("_")
                      and (inspect.isfunction(value) or isinstance(value, property))]
    return names


def test_every_public_name_is_on_the_api_page():
    page = set(documented())
    assert [n for n in sktransfer.__all__ if f"sktransfer.{n}" not in page] == []


@pytest.mark.parametrize("name", documented())
def test_docstring_is_valid_numpydoc(name):
    errors = [f"{code}: {message}" for code, message in
              numpydoc_validation.validate(name)["errors"] if code not in IGNORED]
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimators_have_see_also_and_examples_that_run(name):
    cls = getattr(sktransfer, name)
    assert "See Also\n    --------" in cls.__doc__
    assert "Examples\n    --------" in cls.__doc__
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(cls, name, globs={"PretrainedFeatureExtractor":
                                               sktransfer.PretrainedFeatureExtractor}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
