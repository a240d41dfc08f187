# Darkroom: `make run` serves the app, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000

# The web process does no pixel work; letting its threads share two malloc
# arenas (instead of up to 8 per core) keeps its RSS flat under concurrent
# requests. Children are single-threaded and unaffected. See bench/RESULTS.md.
export MALLOC_ARENA_MAX ?= 2

.PHONY: run test test-fast handoff serve bench cleanup clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Darkroom needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	@echo "Installing Darkroom's dependencies into $(VENV) (first run only)..."
	$(BIN)/pip install --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "Installing Darkroom's test dependencies into $(VENV) (first run only)..."
	$(BIN)/pip install --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/flask --app app run --host $(HOST) --port $(PORT)

# The fast subset first (a broken change stops there, within a minute), then every other test; one
# coverage measurement over both.
test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -x -m fast --cov --cov-report= $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m "not fast" --cov --cov-append --cov-report=term $(PYTEST_ARGS)
	$(MAKE) handoff

# The quick loop while changing code: ruff, mypy and the tests of tests/app not marked slow.
test-fast: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -x -m fast $(PYTEST_ARGS)

# flask-handoff as a package: the sdist and wheel checked (twine, the README run as written, the
# sdist's own tests against the wheel), its docs built with warnings as errors, and the server
# matrix run against the wheel (`make handoff NOX_ARGS="-s matrix -- gevent uwsgi"` for some cells).
handoff: $(VENV)/.dev
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/nox $(NOX_ARGS)

serve: $(VENV)/.runtime
	$(BIN)/gunicorn --config gunicorn.conf.py "app:create_app()"

$(VENV)/.bench: requirements.txt requirements-dev.txt requirements-bench.txt | $(BIN)/python
	@echo "Installing the benchmark's peers (Celery, RQ, libvips) into $(VENV) (first run only)..."
	$(BIN)/pip install --disable-pip-version-check -r requirements-bench.txt
	@touch $@ $(VENV)/.dev $(VENV)/.runtime

bench: $(VENV)/.bench
	@command -v redis-server >/dev/null || { echo "make bench needs redis-server for Celery and RQ: apt-get install redis-server"; exit 1; }
	$(BIN)/python -m bench --write

cleanup: $(VENV)/.runtime
	$(BIN)/flask --app app cleanup

clean:
	rm -rf $(VENV) .pytest_cache
