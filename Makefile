# reloop: the two set-up commands are `make demo` (main job) and `make test` (test suite).
# Both install everything they need into .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PYTHONHASHSEED := 0

.PHONY: install install-bench test test-slow lint bench bench-train lock clean help

help:
	@echo "make install      create .venv and install reloop with its dev tools"
	@echo "make test         install if needed, then run the test suite (slow tests excluded)"
	@echo "make test-slow    run only the tests marked slow"
	@echo "make bench        run every benchmark; figures go to benchmarks/results/"
	@echo "make lint         ruff"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks dags

bench: install-bench
	$(BIN)/python -m benchmarks.run_all

bench-train: install-bench
	$(BIN)/python -m benchmarks.train_throughput

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^reloop' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
