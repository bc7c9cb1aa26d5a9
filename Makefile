# Everyday commands. Each one creates or reuses the project's virtualenv (.venv) on its own.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
PYTEST_ARGS ?=

.PHONY: venv browser test test-all demo airflow sandbox-hubspot sandbox-aep seed reset bench lint clean

venv: $(STAMP)

$(STAMP): requirements.txt providers/audience-sync-provider/pyproject.toml providers/audience-sync-provider/audience_sync_provider/__init__.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

## Debian's chromium for the UI's browser test (tests/ui/test_browser.py); does nothing when installed.
browser:
	./scripts/install_browser.sh

## The test suite CI runs (slow-marked tests excluded; `make test-all` runs them too).
test: venv browser
	$(PY) -m pytest -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

test-all: venv browser
	$(PY) -m pytest $(PYTEST_ARGS)

## Seed the sandbox, run the sync end to end twice (full, then incremental), print the reports.
demo: venv
	./scripts/demo.sh

## The Airflow UI on http://localhost:8080 with both sandboxes running and the connections set.
airflow: venv
	./scripts/airflow_local.sh

sandbox-hubspot: venv
	./scripts/sandbox.sh hubspot

sandbox-aep: venv
	./scripts/sandbox.sh aep

seed: venv
	./scripts/sandbox.sh seed --profiles $${PROFILES:-10000} --audiences $${AUDIENCES:-3}

reset: venv
	./scripts/sandbox.sh reset

bench: venv
	$(PY) -m benchmarks.run

clean:
	rm -rf data airflow_home .pytest_cache
