# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?= .store-dev
# Extra flags for the demo, such as DEMO_ARGS='--big-gib 2 --concurrency 64'.
DEMO_ARGS ?=
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

# The script installs rclone and s3cmd for the client tests when it can (as root or with
# passwordless sudo). Otherwise it prints how to install them, and those tests skip.
test: $(STAMP)
	$(MAKE) lint
	bash tools/install-s3-clients.sh
	$(BIN)/pytest -q tests

# Start a cluster in DIR, run the demo against it, and stop the cluster even when the
# demo fails or is interrupted: the shell's no-op SIGINT trap lets it reach the last step,
# while the demo keeps the default SIGINT handling. The demo's exit status wins.
# KEEP=1 leaves the cluster running.
run: $(STAMP)
	$(BIN)/storectl cluster up --dir "$(DIR)" --detach
	@trap ':' INT; status=0; \
	$(BIN)/python -m store.demo --dir "$(DIR)" $(DEMO_ARGS) || status=$$?; \
	if [ -n "$(KEEP)" ]; then \
		echo "KEEP=1: the cluster in $(DIR) is still running;" \
			"stop it with: $(BIN)/storectl cluster down --dir '$(DIR)'"; \
	else \
		$(BIN)/storectl cluster down --dir "$(DIR)"; down_status=$$?; \
		if [ $$status -eq 0 ]; then status=$$down_status; fi; \
	fi; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) "$(DIR)" .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
