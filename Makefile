# The README's two commands: `make run` and `make test`. Everything else is a helper of those two.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test test-sqlite test-postgres lint bench system-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py create_demo_admin
	$(PY) manage.py create_demo_auditor
	@echo "Serving the example artifact bucket on http://$(HOST):$(PORT)/ (admin: http://$(HOST):$(PORT)/admin/)"
	$(PY) manage.py runserver --noreload --insecure $(HOST):$(PORT)  # --insecure: serve the admin's static files with DEBUG off

# The whole suite on SQLite, then on PostgreSQL when DATABASE_URL names one.
test: install
	$(VENV)/bin/ruff check .
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)
	@case "$${DATABASE_URL:-}" in \
	  postgres*) echo "== PostgreSQL: $${DATABASE_URL}"; $(PY) -m pytest $(PYTEST_ARGS) ;; \
	  *) echo "== DATABASE_URL does not name PostgreSQL: SQLite run only" ;; \
	esac

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) var .pytest_cache
