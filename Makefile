# Set-up and the two everyday commands: `make demo` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Installs through constraints.txt: pinned, tested versions (torch 2.13.0 CPU among them).
$(STAMP): pyproject.toml constraints.txt examples/recengine-plugin-example/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,text]"
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e examples/recengine-plugin-example
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recengine quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff over the whole tree; mypy over the installed recengine package (see .ci/typecheck)
lint: $(STAMP)
	$(BIN)/ruff check .
	bash .ci/typecheck

bench: $(STAMP)
	$(BIN)/python benchmarks/feature_store.py

# docs/benchmarks.md and the README's headline table, from benchmarks/results/*.json
.PHONY: bench-docs
bench-docs: $(STAMP)
	$(BIN)/python -m benchmarks.tables

clean:
	rm -rf $(VENV) recengine.duckdb recengine.snapshots recengine-demo
