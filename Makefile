# `make test` and `make demo` create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint demo bench gpu-check clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The quick loop while editing: no test that trains or predicts with a model.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/python -m ruff check .

demo: $(STAMP)
	$(BIN)/python -m yolohand.demo

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# The GPU paths on a CUDA machine (<= ~8 min on one large GPU), one table; without CUDA: one line, exit 2.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --table runs/gpu_check.md
