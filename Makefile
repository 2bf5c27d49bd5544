# The two commands a new user needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint typecheck check bench audit clean cluster cluster-stop cluster-test

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

## The whole test suite (SQLite by default; set DATABASE_URL=postgres://... for PostgreSQL).
test: $(VENV)/.installed-dev
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
cluster-test: $(VENV)/.installed-dev
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
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
