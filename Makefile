# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast typecheck bench bench-quick native lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/talkinghead demo --force $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# While editing: skips the slow marks and the three-runtime avatar_pack fixture (see README).
test-fast: $(STAMP)
	$(PY) -m pytest -q --fast $(ARGS)

# mypy over sdk/ and models/ (pyproject [tool.mypy]), through the package layout's link tree.
typecheck: $(STAMP)
	$(PY) .ci/typecheck.py $(ARGS)

bench: $(STAMP)
	$(PY) -m talkinghead.benchmarks.run $(ARGS)

bench-quick: $(STAMP)
	$(PY) -m talkinghead.benchmarks.run --quick $(ARGS)

native: $(STAMP)
	$(PY) -m talkinghead.bindings.build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf out .pytest_cache .mypy_cache build/typecheck
