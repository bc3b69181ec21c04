# The two commands of the README: `make demo` (set up, run the main job) and
# `make test` (set up, run the tests). Both create the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

$(BIN)/keras-vit: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[data,serve,analysis,test]"
	touch $@

setup: $(BIN)/keras-vit

demo: setup
	$(BIN)/keras-vit train

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check keras_vit kernels tests benchmarks
