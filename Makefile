# memspice: every target installs what it needs first and is safe to run twice.
#   make demo   set up, then run the main job on built-in defaults
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; an unpinned torch may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.memspice-installed

.PHONY: demo test setup system-deps models clean

demo: setup
	$(VENV)/bin/memspice demo

test: setup
	$(VENV)/bin/python -m pytest

models: setup
	$(VENV)/bin/memspice models
	$(VENV)/bin/memspice netlists

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
