# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := app
# On failure, keep a screenshot and a Playwright trace per e2e test (the folder is wiped at start).
E2E_ARTIFACTS := --output=e2e/artifacts --tracing=retain-on-failure --screenshot=only-on-failure
# Four pytest-xdist workers on two cores: most of the suite waits on real clocks and other
# processes. Tests marked xdist_group(name) run on one worker, one after another.
PARALLEL ?= -n 4 --dist loadgroup

.PHONY: run dev test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## Serve the app with gunicorn on http://127.0.0.1:8000 (embedded SQLite under instance/).
run: $(VENV)/.runtime-installed
	$(BIN)/flask init-db
	$(BIN)/gunicorn --config gunicorn.conf.py app.wsgi:app

## Werkzeug's development server with reload (the scheduler runs in the reloaded child).
dev: $(VENV)/.runtime-installed
	$(BIN)/flask run --debug

## Unit, integration and end-to-end tests (finds or installs Chromium, PostgreSQL, age and zstd).
test: $(VENV)/.dev-installed
	scripts/ensure-tools
	POSTGRES_BIN="$$(scripts/ensure-postgres)" CHROMIUM_PATH="$$(scripts/ensure-chromium)" $(BIN)/python -m pytest $(PARALLEL) $(E2E_ARTIFACTS)

## Everything but the end-to-end and slow tests.
test-fast: $(VENV)/.dev-installed
	scripts/ensure-tools
	POSTGRES_BIN="$$(scripts/ensure-postgres)" $(BIN)/python -m pytest $(PARALLEL) -m "not e2e and not slow"

lint: $(VENV)/.dev-installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache e2e/artifacts
