# Two entry points: `make run` starts the app, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_APP := $(VENV)/.installed-app
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint types imports pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_APP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_APP)

run: $(STAMP_APP)
	$(BIN)/python -m inventory_qt

test: $(STAMP_TEST) lint types imports pytest

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP_TEST)
	$(BIN)/mypy engine inventory_qt

imports: $(STAMP_TEST)
	$(BIN)/lint-imports

pytest: $(STAMP_TEST)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest --timeout=120 -p no:cacheprovider

bench: $(STAMP_APP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
