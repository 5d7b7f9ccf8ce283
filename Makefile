# Quick start: `make demo` runs the main job on an embedded default; `make test` runs the suite.
# Both set themselves up on a fresh Debian machine with Python 3.11+ (redis-server via apt
# when missing and we are root; the project in a virtualenv at .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install redis-server lint typecheck test test-fast bench demo emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "install redis-server (Debian: sudo apt-get install redis-server)"; exit 1; fi; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
