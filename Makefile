# Two entry points: `make run` starts the app, `make test` runs every check.
# Installers: `make dist` builds the bundle, its tar.gz and its .deb; `make dist-test` checks them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_APP := $(VENV)/.installed-app
STAMP_TEST := $(VENV)/.installed-test
STAMP_DIST := $(VENV)/.installed-dist

.PHONY: run test lint types imports pytest bench dist dist-test clean

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

$(STAMP_DIST): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[dist]'
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

# The bundle is rebuilt when a source, resource or packaging file changed
# (packaging/build.py: PyInstaller, then the tar.gz and the .deb).
DIST_SOURCES := pyproject.toml $(shell find engine inventory_qt resources packaging -type f -not -name check.py \
	-not -path '*/__pycache__/*' 2>/dev/null)
DIST_BUILT := dist/.built

$(DIST_BUILT): $(DIST_SOURCES) | $(STAMP_DIST)
	$(BIN)/python packaging/build.py
	touch $@

dist: $(DIST_BUILT)

dist-test: $(DIST_BUILT)
	$(BIN)/python packaging/check.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
