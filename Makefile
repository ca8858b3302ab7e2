# Two commands for a newcomer: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# .ci/python picks the Python for .venv (3.9, else 3.10, else 3.11; pyenv's, uv's or
# on PATH), or says in one line why none fits. SISY_PYTHON=/path/to/python picks one.
# NEEDS is the stack a target runs: PostgreSQL needs Python 3.9 or 3.10.
NEEDS := sqlite-ipc
test test-sqlite test-postgresql tox tox-oldest tox-py311: NEEDS := postgresql-redis
demo: NEEDS := $(if $(filter postgresql-redis,$(SISY_DEMO_STACK)),postgresql-redis,sqlite-ipc)

.PHONY: demo test test-sqlite test-postgresql tox tox-oldest tox-py311 docs services browser venv clean

# A .venv built earlier on another Python is checked against what the target needs.
venv: $(VENV)/.installed
	@.ci/python --check $(PY) $(NEEDS)
$(VENV)/.installed: setup.py requirements/primary.txt requirements/test.txt
	@python=$$(.ci/python $(NEEDS)) && echo "Building $(VENV) with $$python" && \
	    $$python -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip<24.1' 'setuptools<70' wheel
	$(PY) -m pip install -q -r requirements/test.txt -e .
	touch $@

# The demo: SQLite + asgi_ipc by default, nothing else to start;
# SISY_DEMO_STACK=postgresql-redis make demo uses PostgreSQL + Redis instead, and
# SISY_DEMO_STACK=sqlite-redis SQLite + Redis (the Redis stack of Python 3.11).
# Serves http://127.0.0.1:$(DEMO_PORT)/ (admin: admin / admin); Ctrl-C stops it.
# asgi_ipc's shared memory (120 MiB in /dev/shm/sisy-demo-*) outlives the processes,
# so clear_demo_layer removes it once honcho has stopped them all. Ctrl-C reaches
# honcho directly; a SIGTERM or SIGINT sent to make or this shell only is passed on
# to honcho, and the shell waits for it before the EXIT trap clears the layer.
DEMO_PORT ?= 8000
demo: venv
	@case "$$SISY_DEMO_STACK" in *-redis) .ci/services ;; esac
	cd extra/demo && ../../$(PY) manage.py prepare_demo --verbosity 0
	cd extra/demo && trap '../../$(PY) manage.py clear_demo_layer' EXIT; \
	    PATH="$(abspath $(VENV))/bin:$$PATH" honcho start --port $(DEMO_PORT) & \
	    honcho=$$!; trap 'kill -TERM $$honcho 2>/dev/null' INT TERM; \
	    wait $$honcho; status=$$?; \
	    while kill -0 $$honcho 2>/dev/null; do wait $$honcho; status=$$?; done; \
	    exit $$status

services:
	.ci/services

browser:
	.ci/browser

# Unit tests on SQLite with the in-memory layer, plus the real-process tests
# (which start their own heartbeat, workers and daphne on both stacks). The wheel
# test runs in tox's Python 3.11 environment.
test-sqlite: venv services browser
	$(PY) -m pytest -m "not wheel" --durations=15

# The same unit tests on PostgreSQL (concurrent dispatchers need real row locks).
test-postgresql: venv services
	SISY_TEST_DATABASE=postgresql $(PY) -m pytest --ignore=tests/integration

# Unit tests on Python 3.11 (plus its real-process and wheel tests: see tox.ini) and on
# the oldest stack setup.py claims (Python 3.6, Django 1.11); tox finds pyenv's
# interpreters on this PATH. The primary runtime (Python 3.9, Django 2.2) is .venv's,
# which test-sqlite and test-postgresql run: its tox environment would repeat them.
SPACE := $(subst ,, )
PYENV_BINS := $(subst $(SPACE),:,$(wildcard $(HOME)/.pyenv/versions/3.*/bin))
TOX := PATH="$(if $(PYENV_BINS),$(PYENV_BINS):)$$PATH" $(VENV)/bin/tox
tox: tox-oldest tox-py311
tox-oldest: venv
	$(TOX) -e py36-django111
tox-py311: venv services
	$(TOX) -e py311-django22

docs: venv
	$(VENV)/bin/sphinx-build -W -q -b html docs docs/_build/html

# The steps that start no processes of their own run two at a time (the real-process
# tests, timed by what they wait for, each run alone); one tox at a time, as tox
# provisions itself in .tox on first use.
test: test-sqlite
	$(MAKE) --no-print-directory -j2 -Otarget test-postgresql tox-oldest docs
	$(MAKE) --no-print-directory tox-py311
	@echo "All Sisy checks passed."

clean:
	rm -rf $(VENV) .tox docs/_build test-output
