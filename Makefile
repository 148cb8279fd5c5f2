# aiolog: the two commands are `make demo` and `make test`. `make help` lists the rest.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
# Bootstraps $(VENV) (Python 3.11 when available) on first use, again when pyproject.toml changes.
BOOTSTRAP := source .ci/lib.sh && ensure_main_venv
# Extra pytest arguments for `make test`, e.g. make test PYTEST_ARGS="-k sinks -x"
PYTEST_ARGS ?=

.PHONY: help demo test lint typecheck bench venv clean distclean

help:
	@echo "make demo       run the demo (python -m aiolog demo)"
	@echo "make test       ruff + mypy, then pytest on every Python 3.10-3.13 that pyenv has"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make typecheck  mypy (strict) on the aiolog package"
	@echo "make bench      run the benchmarks (python -m benchmarks)"
	@echo "make venv       bootstrap .venv only"
	@echo "make clean      remove caches, build output and test reports (keeps the venvs)"
	@echo "make distclean  clean, and remove the venvs too"

venv:
	@$(BOOTSTRAP)

demo: venv
	$(VENV)/bin/python -m aiolog demo

test:
	@bash .ci/test-all $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy aiolog

bench: venv
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf build dist .test-results .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path './.venv*' -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .venv-3.*
