# The test command of README.md: installs what it needs on a fresh machine, then runs the suite.
PY ?= python3
ORACLE_DIR ?= $(HOME)/.cache/nwb-celltype/oracle-venv
ORACLE_REQ := tests/oracle/requirements.txt

.PHONY: test install oracle lint docs

test: install oracle
	NWB_CELLTYPE_ORACLE_PYTHON=$(ORACLE_DIR)/bin/python $(PY) -m pytest

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,docs]"

# The npyx reference (C4 oracle) lives in its own environment so the package stays on CPU torch.
# Failure to build it is not fatal: the oracle tests then skip, loudly.
oracle:
	@if [ ! -f "$(ORACLE_DIR)/.stamp" ] || ! cmp -s "$(ORACLE_REQ)" "$(ORACLE_DIR)/.stamp"; then \
	  echo "building the npyx oracle environment in $(ORACLE_DIR)"; \
	  rm -rf "$(ORACLE_DIR)" && $(PY) -m venv "$(ORACLE_DIR)" && \
	  "$(ORACLE_DIR)/bin/pip" install -q -r "$(ORACLE_REQ)" && cp "$(ORACLE_REQ)" "$(ORACLE_DIR)/.stamp" \
	  || echo "WARNING: could not build the oracle environment; oracle tests will be skipped"; \
	fi

lint:
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

docs:
	$(PY) -m sphinx -W -b html docs docs/_build/html
