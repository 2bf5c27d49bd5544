# The two commands a new user needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run superuser seed test lint typecheck check bench audit clean cluster cluster-stop cluster-test

$(BIN)/python:
	@py=$$(sh scripts/find-python) || exit 1; \
	echo "Creating $(VENV) with $$py"; \
	$$py -m venv $(VENV) || { echo "error: '$$py -m venv' failed; on Debian/Ubuntu install the python3-venv package for that Python." >&2; exit 1; }
	@$(BIN)/python -m pip install -q --upgrade pip

# Installs are stamped so repeated runs are instant; editing pyproject.toml reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

## Serve the whole app (web + job worker) on http://127.0.0.1:$(PORT) until Ctrl-C.
run: $(VENV)/.installed-run
	@export DEBUG=$${DEBUG:-1}; \
	$(BIN)/microblog migrate --noinput && \
	exec $(BIN)/microblog serve --port $(PORT)

## An admin account on the database `make run` uses (or DATABASE_URL), asked for interactively.
superuser: $(VENV)/.installed-run
	@export DEBUG=$${DEBUG:-1}; \
	$(BIN)/microblog migrate --noinput && \
	exec $(BIN)/microblog createsuperuser

## Test data in an empty database (`make seed PRESET=medium`; small, medium or seed).
PRESET ?= small
seed: $(VENV)/.installed-run
	@export DEBUG=$${DEBUG:-1}; \
	$(BIN)/microblog migrate --noinput && \
	exec $(BIN)/microblog seed --preset $(PRESET)

# axe-core for the browser tests' accessibility checks (tests/conftest.py), pinned by
# tests/a11y/package-lock.json and installed into tests/a11y/node_modules (git-ignored). Without
# npm the browser tests are skipped with a note (REQUIRE_BROWSER=1 makes that an error).
AXE := tests/a11y/node_modules/axe-core/axe.min.js
$(AXE): tests/a11y/package.json tests/a11y/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests/a11y --no-audit --no-fund --loglevel=error && touch $@; \
	else \
	  echo "note: npm not found: the browser tests need axe-core (install Node.js and npm)" >&2; \
	fi

## The whole test suite (SQLite by default; set DATABASE_URL=postgres://... for PostgreSQL).
test: $(VENV)/.installed-dev $(AXE)
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	@touch $@ $(VENV)/.installed-run

## Load tests (docs/benchmarks.md, "Load tests"): seed DATABASE_URL first (`microblog seed`), then
## this starts the app in production mode, runs each scenario for BENCH_SECONDS (30) and writes
## bench/results/load_<database>_<scenario>.json.
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run_bench.py

## The production layout on this machine (docs/deploy.md): HAProxy, 3 web instances, the
## streaming process, a job worker, PgBouncer, PostgreSQL primary + replica, all on loopback and
## under data/cluster. Needs Debian's haproxy, pgbouncer and postgresql packages.
cluster: $(VENV)/.installed-run
	$(BIN)/python -m microblog.cluster start

cluster-stop: $(VENV)/.installed-run
	$(BIN)/python -m microblog.cluster stop

## The cluster's own tests (tests/cluster/): they start a cluster of their own in
## data/cluster-test and stop it at the end.
cluster-test: $(VENV)/.installed-dev $(AXE)
	MICROBLOG_CLUSTER_TESTS=1 $(BIN)/pytest -p no:cacheprovider tests/cluster $(PYTEST_ARGS)

$(VENV)/.installed-audit: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[audit]'
	@touch $@ $(VENV)/.installed-run

## Known vulnerabilities in the installed dependencies (docs/operations.md, "Dependency audit").
## Needs the network: pip-audit asks PyPI's advisory service; it has no offline mode.
audit: $(VENV)/.installed-audit
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off --desc

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	DEBUG=1 $(BIN)/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache tests/a11y/node_modules
