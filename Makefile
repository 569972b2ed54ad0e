# Two commands on a fresh machine: `make demo` and `make test`.
# torch is pinned first so pip takes the local CPU wheel instead of a CUDA build;
# a user with a GPU installs their own torch before `pip install -e .`.
# Everything else installs within pyproject.toml's ranges at the versions pinned in
# requirements/constraints.txt, so a fresh machine gets the set the tests passed with.
# `make lock` rewrites that file from the ranges (the newest releases they allow).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
LOCK_VENV := .venv-lock
LATEST_VENV := .venv-latest

.PHONY: setup demo test test-fast test-latest wheel-check lock lint bench notebooks clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/aelab demo $(ARGS)

# The tests run in one worker per core (pytest-xdist; a test file stays on one worker, so its module
# fixtures are made once), each with one torch thread: two 2-thread torch processes on 2 cores slow
# each other several-fold. TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= auto
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(XDIST) --durations=20 $(PYTEST_ARGS)

# The suite without the tests marked slow (trainings of their own, CLI and server processes, big
# files), and hypothesis properties on a few examples each (the "fast" profile in tests/conftest.py).
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 AELAB_HYPOTHESIS=fast $(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# For maintainers: the newest releases the ranges allow, no constraints, in their own venv,
# then every CLI test (the installed script in subprocesses included). A failure here means a
# range needs an upper bound or the code a fix.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PY) -m venv $(LATEST_VENV) || python3 -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q "$(TORCH)"
	$(LATEST_VENV)/bin/pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST_VENV)/bin/pip freeze --exclude-editable
	$(LATEST_VENV)/bin/python -m pytest tests/test_cli.py $(PYTEST_ARGS)

# The artefact users get: build the wheel, install it with torch into a fresh venv, run it outside the checkout.
wheel-check:
	PY=$(PY) CONSTRAINTS=$(CONSTRAINTS) TORCH="$(TORCH)" bash .ci/wheel_check

# Regenerate requirements/constraints.txt: a fresh venv from the ranges (torch pinned), then pip freeze.
lock:
	rm -rf $(LOCK_VENV)
	$(PY) -m venv $(LOCK_VENV) || python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q "$(TORCH)"
	$(LOCK_VENV)/bin/pip install -q ".[dev,pdf,bench]"
	mkdir -p $(dir $(CONSTRAINTS))
	{ echo "# Tested versions inside pyproject.toml's ranges. Written by 'make lock'; do not edit by hand."; \
	  echo "# Used as: pip install -c $(CONSTRAINTS) -e '.[dev]'  (torch first: pip install $(TORCH))"; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -viE '^aelab( |=|@)' | sed -E 's/^torch==([^+]*)\+.*/torch==\1/'; \
	} > $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(CONSTRAINTS)"

# The example notebooks top to bottom in a fresh kernel, outputs kept in runs/notebooks/ (the committed
# copies stay without outputs). ARGS=--quick: the tests' smaller settings.
notebooks: $(STAMP)
	$(BIN)/python examples/run_notebooks.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aelab tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(LATEST_VENV) runs build dist *.egg-info
