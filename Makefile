# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?= .store-dev
STAMP := $(VENV)/.installed
# Only folders that exist: ruff fails on a missing path.
LINT_PATHS := $(wildcard store metaserver dataserver tests bench tools)

.PHONY: run test lint proto install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: $(STAMP)
	$(MAKE) lint
	$(BIN)/pytest -q tests

run: $(STAMP)
	$(BIN)/python -m store.demo --dir $(DIR) $(if $(KEEP),--keep)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(DIR) .pytest_cache .mypy_cache .ruff_cache
