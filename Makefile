# The two commands of the README: `make demo` (set up, run the main job) and
# `make test` (set up, run the tests). Both create the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

SOURCES := keras_vit kernels tests benchmarks setup.py

.PHONY: setup demo test

$(BIN)/keras-vit: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[data,serve,test]"
	touch $@

setup: $(BIN)/keras-vit

demo: setup
	$(BIN)/keras-vit train

test: setup
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/python -m pytest
