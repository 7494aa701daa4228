# memspice: every target installs what it needs first and is safe to run twice.
#   make demo   set up, then run the main job on built-in defaults
#   make test   set up, then run the test suite
# Variables: PYTHON (the interpreter the venv is made from), VENV, TORCH_SPEC (which torch), and
# TORCH_INDEX (the index torch comes from: PyTorch's CPU index gives the CPU-only build, see the
# docs/install.md). A torch already importable in the venv is kept as it is.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.memspice-installed

.PHONY: demo test setup system-deps models clean

demo: setup
	$(VENV)/bin/memspice demo

# One pytest worker per core, each test file on one worker (its module fixtures built once).
test: setup
	$(VENV)/bin/python -m pytest -n auto --dist loadfile

models: setup
	$(VENV)/bin/memspice models
	$(VENV)/bin/memspice netlists

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -c 'import torch' 2>/dev/null || \
		$(VENV)/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install --quiet -e ".[test,bench,cluster,docs]"
	touch $(STAMP)

# Removes the environment and caches; runs/ (trainings, verifications) is left alone.
clean:
	rm -rf $(VENV) .pytest_cache memspice.egg-info
