# The test command of README.md: `make test` installs what it needs into a virtual environment (the
# active one, else ./.venv, created here: never the system Python, see PEP 668), builds the npyx
# oracle environment, then runs the suite.
PY ?= python3
VENV ?= $(or $(VIRTUAL_ENV),.venv)
VPY := $(VENV)/bin/python
# CPU torch on any machine: the pin can only match PyTorch's CPU build. PyTorch's CPU index is used
# where it answers (.ci/torch_index.py probes it for at most 5 s); elsewhere pip's own configuration
# must provide the wheel (e.g. a local CPU wheel through find-links). CUDA: `make install
# TORCH=torch==2.13.0` (PyPI's Linux wheel is the CUDA build); TORCH= keeps the torch installed.
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
ORACLE_DIR ?= $(HOME)/.cache/nwb-celltype/oracle-venv

.PHONY: test install oracle lint docs

test: install oracle
	NWB_CELLTYPE_ORACLE_PYTHON=$(ORACLE_DIR)/bin/python $(VPY) -m pytest

$(VPY):
	$(PY) -m venv $(VENV)

install: $(VPY)
ifneq ($(strip $(TORCH)),)
	$(VPY) -m pip install -q $$($(VPY) .ci/torch_index.py $(TORCH_INDEX)) "$(TORCH)"
endif
	$(VPY) -m pip install -q -e ".[test,docs]"

# The npyx reference (C4 oracle) lives in its own environment (CPU torch, ~1.8 GB), reused while its
# requirements and interpreter are unchanged. If it cannot be built: an error in CI (CI=true), else a
# warning, and the oracle tests skip loudly.
oracle:
	$(PY) tests/oracle/build.py --dir "$(ORACLE_DIR)" --torch-index "$(TORCH_INDEX)"

lint: $(VPY)
	$(VPY) -m ruff check . && $(VPY) -m ruff format --check .

docs: $(VPY)
	$(VPY) -m sphinx -W -b html docs docs/_build/html
