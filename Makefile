# Two entry points do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs architecture bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Two pytest processes share the CPUs (pytest-xdist; tests marked xdist_group(name) share
# a worker: one Dask cluster); the tests marked `precision` then
# run again with the CPU's bf16 answer flipped, so that precision="auto" is tested on its
# bfloat16 and its float32 path whichever kind of CPU this is (see docs/user_guide.md).
PYTEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(MAKE) docs
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist=loadgroup
	$(BIN)/python -m pytest -m precision --native-bf16=flip -q

# API reference and user guide; warnings are errors so the docs cannot rot.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The architecture picture, its edge list and module table (docs/images/), drawn from the
# code; tests/test_architecture.py fails until they are redrawn after a change of imports.
architecture: $(STAMP)
	$(BIN)/python tools/import_graph.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache docs/_build demo_output
