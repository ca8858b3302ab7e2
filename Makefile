# Two commands for a newcomer: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.9 is the newest Python that Django 2.2 supports.
PYTHON39 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python) $(shell command -v python3.9))

.PHONY: demo test test-sqlite test-postgresql tox-oldest docs services browser venv clean

venv: $(VENV)/.installed
$(VENV)/.installed: setup.py requirements/primary.txt requirements/test.txt
	@test -n "$(PYTHON39)" || { echo "Python 3.9 not found; set PYTHON39=/path/to/python3.9" >&2; exit 1; }
	$(PYTHON39) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip<24.1' 'setuptools<70' wheel
	$(PY) -m pip install -q -r requirements/test.txt -e .
	touch $@

services:
	.ci/services

browser:
	.ci/browser

# Unit tests on SQLite with the in-memory layer, plus the real-process tests
# (which start their own heartbeat, workers and daphne on both stacks).
test-sqlite: venv services browser
	$(PY) -m pytest

# The same unit tests on PostgreSQL (concurrent dispatchers need real row locks).
test-postgresql: venv services
	SISY_TEST_DATABASE=postgresql $(PY) -m pytest --ignore=tests/integration

tox-oldest: venv
	$(VENV)/bin/tox -e py36-django111

docs: venv
	$(VENV)/bin/sphinx-build -W -q -b html docs docs/_build/html

test: test-sqlite test-postgresql tox-oldest docs
	@echo "All Sisy checks passed."

clean:
	rm -rf $(VENV) .tox docs/_build test-output
