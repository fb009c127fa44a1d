# Two entry points for a fresh machine with only Python 3.11, pip and make:
#   make demo   set up .venv and run the main job
#   make test   set up .venv with the dev extras and run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test setup setup-dev bench clean

$(VENV)/.base: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first, alone and pinned: nothing after it may replace it.
	$(PIP) torch==2.13.0
	$(PIP) -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) -e '.[dev,postgres]'
	@touch $@

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

demo: setup
	@# the main job: train, lr_find, tune, retrain, prune, distill, quantize, export, bench,
	@# serve_check; prints the stage table and the report path (cached stages are skipped)
	$(VENV)/bin/dlopt run examples/mnist-pipeline.yaml

test: setup-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup-dev
	$(PIP) -e '.[bench]'
	$(PY) bench/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
