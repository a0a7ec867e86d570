"""Sphinx configuration: `make docs` builds docs/_build/html with warnings as errors."""

project = "sktransfer"
author = "sktransfer developers"
copyright = "2026, sktransfer developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
autodoc_mock_imports = []
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
nitpicky = False
intersphinx_mapping = {}
html_theme = "alabaster"
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]
