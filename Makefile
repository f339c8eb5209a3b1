# Two commands on a fresh machine with Python 3.11, git and make:
#   make run    creates .venv, loads the demo data and serves segflow at http://127.0.0.1:8000
#   make test   creates .venv and runs lint, type checks, the import layering and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/segflow demo
	$(BIN)/segflow serve --host 127.0.0.1 --port 8000

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The rule-bounds tests run in a process of their own: in one process after
# the rest of the suite, the interpreter crashed (SIGSEGV in a garbage
# collection during the largest rule's compilation on PostgreSQL), twice at
# the same test, while the file passes alone; see the issue-17 closing note.
test: lint
	$(BIN)/pytest --ignore=tests/test_rule_bounds.py
	$(BIN)/pytest tests/test_rule_bounds.py

bench: $(VENV)/.installed
	$(BIN)/python bench/import_bench.py --repeat 3
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/sync_bench.py
	$(BIN)/python bench/live_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
