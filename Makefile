# The two commands of the README: `make demo` (set up, run the main job) and
# `make test` (set up, run the tests). Both create the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

SOURCES := keras_vit kernels triton_repo tests benchmarks setup.py

.PHONY: setup demo test bench-setup bench

$(BIN)/keras-vit: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[data,serve,jax,test]"
	touch $@

setup: $(BIN)/keras-vit

demo: setup
	$(BIN)/keras-vit demo

test: setup
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Benchmark-only dependencies: keras-hub beside keras_vit, and timm on PyTorch in
# a separate virtualenv (torch and TensorFlow are kept apart).
bench-setup: setup
	$(BIN)/pip install --quiet "keras-hub==0.32.*"
	test -x .venv-timm/bin/python || $(PYTHON) -m venv .venv-timm
	.venv-timm/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" "timm==1.0.31"

bench: bench-setup
	$(BIN)/python benchmarks/speed.py --timm-python .venv-timm/bin/python
