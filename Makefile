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

# setuptools prints an advisory on every editable install of a flat layout
# ("folders in your working directory with the same name as your package");
# that is this project's layout on purpose, so the advisory is filtered out.
PIP_INSTALL := PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet

$(STAMP_APP): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
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
