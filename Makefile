# The whole set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.t1c-installed
TORCH  ?= torch==2.13.0

.PHONY: demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# make demo ARGS=--rebuild: build the cached source .t1c again (python -m t1c.demo --help: every flag)
demo: $(STAMP)
	$(PY) -m t1c.demo $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check t1c tests recipes benchmarks
	$(PY) -m ruff format --check t1c tests recipes benchmarks

format: $(STAMP)
	$(PY) -m ruff format t1c tests recipes benchmarks
	$(PY) -m ruff check --fix t1c tests recipes benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info lightning_logs demo_runs
