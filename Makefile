# logfabric: `make demo` runs a live local fabric, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format proto proto-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[broker,test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/logfabric demo

test: $(STAMP) lint proto-check
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

proto: $(STAMP)
	PYTHON=$(PY) scripts/gen-proto

# Fails when the committed generated code differs from what proto/ produces.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && PYTHON=$(PY) scripts/gen-proto $$tmp && \
	  diff -r -x __pycache__ $$tmp fabric/_proto >/dev/null || \
	  { echo "fabric/_proto is stale: run 'make proto' and commit the result"; rm -rf $$tmp; exit 1; }; \
	  rm -rf $$tmp; echo "generated protobuf code is fresh"

# Not part of `make test`: about 8 minutes, and the figures are only meaningful as ratios.
# --callgrind adds P1 in instructions per call when valgrind is installed.
BENCH_ARGS ?= --callgrind
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
