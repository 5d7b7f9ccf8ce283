# Quick start: `make demo` runs the main job on an embedded default; `make test` runs the suite.
# Both set themselves up on a fresh Debian machine with Python 3.11+ (redis-server via apt
# when missing and we are root; the project in a virtualenv at .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Every install takes exact versions with hashes from requirements/*.lock (made by `make lock`):
# dev.lock for the venv (runtime, tests and tools), runtime.lock for the Docker image.
DEV_LOCK := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
LATEST_VENV ?= .venv-latest
# `make lock` moves every pin to the newest release; `make lock PACKAGE=redis==8.1.0` moves one.
PACKAGE ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

.PHONY: install redis-server lint typecheck test test-fast bench demo emulator clean lock check-latest docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

lock: install
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra test --extra dev \
	  $(if $(PACKAGE),--upgrade-package '$(PACKAGE)',--upgrade) -o $(DEV_LOCK)
	$(UV_COMPILE) pyproject.toml requirements/build.in -c $(DEV_LOCK) -o $(RUNTIME_LOCK)

# The newest releases, unpinned, in a scratch venv: lint, types and the fast tests, so that a
# breaking release upstream is seen here before a user meets it.
check-latest: redis-server
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[test,dev]'
	$(LATEST_VENV)/bin/pip freeze --exclude-editable
	$(LATEST_VENV)/bin/ruff check .
	$(LATEST_VENV)/bin/ruff format --check .
	$(LATEST_VENV)/bin/lint-imports
	$(LATEST_VENV)/bin/mypy
	$(LATEST_VENV)/bin/pytest -m "not e2e and not fault and not locked_install" -p no:cacheprovider

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "install redis-server (Debian: sudo apt-get install redis-server)"; exit 1; fi; }

# The settings reference, made from the settings model (a test checks it is up to date).
docs: install
	$(BIN)/python -m cdn_refresh.settings_reference > docs/settings.md

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: install redis-server lint typecheck
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not e2e and not fault"

demo: install redis-server
	$(BIN)/cdn-refresh demo

emulator: install
	$(BIN)/cdn-refresh emulator --host 127.0.0.1 --port 8800

bench: install redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LATEST_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
