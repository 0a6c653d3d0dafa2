# geodiff — make install | demo | test | test-slow | lint | bench | equivariance
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.geodiff-installed
TORCH_VERSION := 2.13.0
# datasets: $GEODIFF_DATA, else ../shared/data beside the repository when it exists (the configs' data path)
ifneq ($(wildcard ../shared/data),)
export GEODIFF_DATA ?= $(abspath ../shared/data)
endif

.PHONY: install demo test test-slow lint bench equivariance clean

install: $(STAMP)

# Re-runs only when the package metadata changes; otherwise `make install` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null \
		|| $(PIP) install --quiet "torch==$(TORCH_VERSION)"
	$(PIP) install --quiet -e ".[dev,loggers,docking]"
	@touch $(STAMP)
	@echo "geodiff installed in $(VENV)"

demo: install
	$(PY) sampling/demo.py --out demo_out

test: install
	$(PY) -m pytest -q tests

test-slow: install
	$(PY) -m pytest -q -m slow tests

lint: install
	$(VENV)/bin/ruff check geodiff tests eval sampling
	$(VENV)/bin/ruff format --check geodiff tests eval sampling

bench: install
	@$(PY) -c "import open3d" 2>/dev/null || $(PIP) install --quiet -e ".[dev,eval]"
	@for f in eval/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# the orbit sweep (geodiff equivariance, full grids) of every shipped model: JSON in eval/results/equivariance,
# NERO plots in docs/symmetry
SHIPPED := $(notdir $(wildcard checkpoints/*_small))
equivariance: install
	@mkdir -p eval/results/equivariance docs/symmetry
	@for m in $(SHIPPED); do echo "== $$m"; $(PY) -m geodiff.cli equivariance ckpt=$$m \
		output=eval/results/equivariance/$$m.json plot=docs/symmetry/$$m.png || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
