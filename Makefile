# strongroom: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test venv tools check fmt lint typecheck pytest schemas sync-stub api-docs bench bench-backends bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/strongroom demo

# Tools some tests drive besides Python (docs/security.md's worked example: node, jq, sqlite3).
# Installed from Debian in CI (CI=true, as root) when missing; elsewhere those tests skip.
# Chromium (tests/test_web_browser.py drives /usr/bin/chromium through Playwright) is
# installed from Debian whenever it is missing and this runs as root, CI or not. RabbitMQ
# (tests/test_workers_celery.py) is started in CI when it is installed and not listening;
# redis-server is installed in CI when missing (the Redis broker test starts its own).
tools:
	@if [ "$$CI" = "true" ]; then \
	  for pair in node:nodejs jq:jq sqlite3:sqlite3 redis-server:redis-server; do \
	    command -v $${pair%%:*} >/dev/null || { apt-get update -qq && apt-get install -y -qq $${pair##*:}; }; \
	  done; \
	fi
	@if [ "$$CI" = "true" ] && command -v rabbitmq-server >/dev/null && \
	  ! $(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2)" 2>/dev/null; then \
	  echo "starting RabbitMQ for the worker tests"; rabbitmq-server -detached; \
	fi
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: $(STAMP) tools
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

schemas: $(STAMP)
	$(BIN)/python -m strongroom.models.export schemas
	$(BIN)/python -m strongroom.web.openapi schemas

sync-stub: $(STAMP)
	$(BIN)/python -m strongroom._sync_stub

api-docs: $(STAMP)
	$(BIN)/python -m strongroom._api_docs build/api

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-backends: $(STAMP)
	$(BIN)/python -m benchmarks.run --backend all

# strongroom beside MLflow, Prefect and DBOS (issue 21; docs/performance.md). Optional, not part
# of `make test`: its own venv, strongroom (editable, with its dependencies) + the pinned peers,
# one interpreter for every side. `make bench-peers PEERS_ARGS=--quick` for a smoke run.
PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-peers

$(PEERS_STAMP): pyproject.toml benchmarks/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -e . -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python -m benchmarks.peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .strongroom .pytest_cache .mypy_cache .ruff_cache
