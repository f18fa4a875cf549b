# The two commands of the README: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

INSTALLED := .venv-installed

.PHONY: demo test lint bench bench-peers fuzz clean venv services wheel installed

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "meterlink needs Python >= 3.11 ($(PYTHON) is $$($(PYTHON) -V 2>&1))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
		else echo "cannot create a venv: install python3-venv"; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/meterlink demo

services:
	@bash scripts/install-test-services.sh

# The artefact users install: the wheel is built and checked, then installed non-editable into a
# fresh venv exactly as the README's "Install on an edge box" does (`pip install .`); the
# end-to-end tests run that venv's `meterlink` (METERLINK_VENV, tests/simproc.py).
wheel: $(STAMP)
	rm -rf dist build
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .
	$(VENV)/bin/check-wheel-contents dist/
	@# the layer contracts run on the wheel's one `meterlink` tree, as installed (ARCHITECTURE.md)
	$(PY) -m zipfile -e dist/meterlink-*.whl build/layers
	PYTHONPATH=$(CURDIR)/build/layers $(VENV)/bin/lint-imports

installed: wheel
	rm -rf $(INSTALLED)
	$(PYTHON) -m venv $(INSTALLED)
	$(INSTALLED)/bin/pip install -q .
	rm -rf build

test: $(STAMP) services installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/deptry .
	METERLINK_VENV=$(CURDIR)/$(INSTALLED) $(PY) -m pytest -q -p randomly

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP) services
	$(PY) -m bench

# thingsboard-gateway side by side with Meterlink on the load of ../shared/BENCHMARKS.md (installs it in .bench-peers)
bench-peers: $(STAMP) services
	$(PY) -m bench.peers

# a long fuzzing run of the codecs (1,000,000 inputs each; FUZZ_ARGS="--inputs 10000000" for more)
fuzz: $(STAMP)
	$(PY) -m fuzz $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) $(INSTALLED) dist build .bench-peers data .pytest_cache .ruff_cache .hypothesis
