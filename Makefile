# The README's two commands: `make run` (set up, run the example job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres
EXAMPLE ?= examples/daily_sales

.PHONY: run test lint typecheck pytest postgres kubernetes browser sandbox labextension-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The install also builds the JupyterLab extension (labextension/, with jlpm) into the package,
# copies Swagger UI's files for /docs there (labextension/swagger-ui.js) and compiles the web
# console (labextension/console/, typed by scripts/console_types.py from the OpenAPI document).
LABEXTENSION_SOURCES := labextension/package.json labextension/yarn.lock \
	labextension/schema/plugin.json labextension/swagger-ui.js \
	$(wildcard labextension/src/*.ts labextension/style/*) \
	labextension/console/tsconfig.json $(wildcard labextension/console/*.ts)

$(VENV)/.installed: pyproject.toml $(LABEXTENSION_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Set up and run the example job on the embedded default database (SQLite in ~/.nbplane).
run: $(VENV)/.installed
	$(BIN)/nbplane job run $(EXAMPLE) --arguments '{"days": 7}'

## Set up and run the whole suite: lint, types, tests on SQLite, a real PostgreSQL and a real
## Kubernetes API server (built once from Debian's source package, cached in ~/.cache).
test: $(VENV)/.installed postgres kubernetes browser sandbox lint typecheck labextension-test pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed
	$(BIN)/mypy

## Unit tests of the JupyterLab extension's logic (validation, step numbers, failing cells).
labextension-test: $(VENV)/.installed
	cd labextension && $(abspath $(BIN))/jlpm install && $(abspath $(BIN))/jlpm test

## Three workers on two cores (the tests wait on kernels, servers and processes part of the
## time); the tests sharing a server, the Kubernetes API server or the browser stay on one
## worker (loadgroup). The slowest 30 are listed at the end, to know what to make cheaper next.
PYTEST_WORKERS ?= 3

pytest: $(VENV)/.installed
	NBPLANE_TEST_POSTGRES_URL=$(PG_ADMIN_URL) NBPLANE_TEST_REQUIRE_POSTGRES=1 \
		NBPLANE_TEST_REQUIRE_KUBERNETES=1 NBPLANE_TEST_REQUIRE_BROWSER=1 \
		NBPLANE_TEST_REQUIRE_SANDBOX=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=30

postgres:
	bash scripts/postgres.sh

kubernetes:
	bash scripts/kubernetes.sh

## Chromium for the browser tests (Playwright drives /usr/bin/chromium).
browser:
	bash scripts/browser.sh

## bubblewrap, the sandbox of local jobs and sessions (tests/security/test_sandbox.py).
sandbox:
	bash scripts/sandbox.sh

bench: $(VENV)/.installed
	$(BIN)/python bench/job_vs_vdk.py
	$(BIN)/python bench/resume.py
	$(BIN)/python bench/api_vs_jupyrest.py
	$(BIN)/python bench/control_plane.py
	$(BIN)/python bench/sessions_vs_jupyterhub.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
