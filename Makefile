# vlmswap: the two commands of the quick start are `make run` and `make test`.
# Each creates .venv when missing and installs what it needs; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# torch and torchvision: these exact releases install from this machine kind's local disk.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: run test lint system-deps bench clean help

help:
	@echo "make run    - set up .venv and start the gateway (embedded rapidocr by default) and the web UI"
	@echo "make test   - set up .venv with the test extras, system test deps, lint, and run the whole suite"
	@echo "make lint   - ruff check and ruff format --check (src, tests, bench) and mypy (the modules listed in pyproject.toml, strict)"
	@echo "make bench  - run the benchmarks under bench/ (results in bench/README.md)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Core + UI + the transformers engine: the gateway, the embedded engine, the web UI, and chat on
# a CPU once `vlmswap pull smolvlm` has fetched the small chat model of the default registry.
$(VENV)/.run-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[ui,docker,transformers]'
	touch $@

# Everything, tests included. torch comes first so the extras find it satisfied.
$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[all,test,ray]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/vlmswap up

# Docker engine, Chromium and busybox (for the container tests' images); root only.
system-deps:
	@bash scripts/system-deps.sh

# Static checks: ruff's lint rules, ruff's formatting and mypy, all configured in pyproject.toml.
lint: $(VENV)/.test-installed
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

test: $(VENV)/.test-installed system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	@bash scripts/system-deps.sh bench
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
