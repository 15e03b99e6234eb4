# The README's two commands: `make run` and `make test`. Everything else is a helper of those two.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0
WORKER_PORT ?= 9100
# The example's Celery worker: safety scans of uploads run there (docs/workers.md).
WORKER_CMD = $(PY) -m celery -A example_project.celery -q worker --pool prefork -c 2 -Q scans,celery

.PHONY: install run test test-sqlite test-postgres lint typecheck bench system-deps clean

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
	@if $(PY) -c "import socket, urllib.parse as u; p = u.urlsplit('$(CELERY_BROKER_URL)'); socket.create_connection((p.hostname, p.port or 6379), 1)" 2>/dev/null; then \
	  echo "Celery worker for the safety scans started beside the server (metrics and probes: http://127.0.0.1:$(WORKER_PORT)/metrics); alone it is:"; \
	  echo "  CELERY_BROKER_URL=$(CELERY_BROKER_URL) $(WORKER_CMD)"; \
	  export CELERY_BROKER_URL=$(CELERY_BROKER_URL) EXAMPLE_SCAN_ON_UPLOAD=1 OBSERVABILITY_WORKER_METRICS_PORT=$(WORKER_PORT) \
	    PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/worker-multiproc; \
	  $(WORKER_CMD) & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	  env -u PROMETHEUS_MULTIPROC_DIR -u OBSERVABILITY_WORKER_METRICS_PORT $(PY) manage.py runserver --noreload --insecure $(HOST):$(PORT); \
	else \
	  echo "No broker at $(CELERY_BROKER_URL): uploads are not scanned in the background. Start Redis (redis-server --daemonize yes) and run again, or start the worker yourself:"; \
	  echo "  CELERY_BROKER_URL=$(CELERY_BROKER_URL) $(WORKER_CMD)"; \
	  $(PY) manage.py runserver --noreload --insecure $(HOST):$(PORT); \
	fi  # --insecure: serve the admin's static files with DEBUG off

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

# mypy with django-stubs over the package (config: pyproject.toml [tool.mypy]); not part of `make test` yet.
typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks

system-deps:
	bash scripts/install-system-deps.sh

clean:
	rm -rf $(VENV) var .pytest_cache
