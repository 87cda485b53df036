# Healthcrypt developer commands. `make help` lists them.
# Everything runs inside .venv, created on first use from requirements/*.txt (pinned and hashed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k crypto -x"`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files make a second run quick: pip runs again only when a requirements file changed.
$(VENV)/.base-installed: requirements/base.txt | $(PY)
	$(PIP) install --quiet --require-hashes -r requirements/base.txt
	@touch $@

$(VENV)/.dev-installed: requirements/dev.txt | $(PY)
	$(PIP) install --quiet --require-hashes -r requirements/dev.txt
	@touch $@ $(VENV)/.base-installed

.PHONY: install
install: $(VENV)/.base-installed ## Create the virtualenv with the runtime requirements.

.PHONY: install-dev
install-dev: $(VENV)/.dev-installed ## Create the virtualenv with the development requirements.

.PHONY: demo
demo: install ## Set up and run the demo hospital on http://127.0.0.1:8000 (SQLite, throwaway keys).
	DEBUG=1 $(PY) manage.py migrate --verbosity 0
	DEBUG=1 $(PY) manage.py seed_demo
	@echo ""
	@echo "Open http://$(HOST):$(PORT)/ and sign in with one of the usernames and passwords above."
	@echo "Press Ctrl+C to stop the server."
	DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

# Branch coverage floors: the whole project, and each group of the code that reads and writes patient
# data (the write path was the least tested). `make test` fails under them.
COVERAGE_FLOOR := 90
COVERAGE_GROUPS := 'records/services/*' 'records/selectors/*' 'records/permissions.py' 'audit/*'

.PHONY: test
test: install-dev ## Lint, type-check, check migrations and imports, run the suite with the coverage gate (DATABASE_URL picks the database).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	DEBUG=0 DJANGO_SETTINGS_MODULE=healthcrypt.settings_test $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest --cov --cov-report= $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),@echo "Coverage gate skipped: PYTEST_ARGS ran part of the suite.",@$(MAKE) --no-print-directory coverage-gate)

.PHONY: coverage-gate
coverage-gate: install-dev ## Fail if branch coverage of the last test run is under the floor, overall or in a gated group.
	@echo "Branch coverage overall: $$($(VENV)/bin/coverage report --format=total)% (floor $(COVERAGE_FLOOR)%)"
	@$(VENV)/bin/coverage report --fail-under=$(COVERAGE_FLOOR) >/dev/null || { echo "Under the floor overall"; exit 1; }
	@for group in $(COVERAGE_GROUPS); do \
	  total=$$($(VENV)/bin/coverage report --include="$$group" --format=total) || exit 1; \
	  echo "Branch coverage of $$group: $$total% (floor $(COVERAGE_FLOOR)%)"; \
	  $(VENV)/bin/coverage report --include="$$group" --fail-under=$(COVERAGE_FLOOR) >/dev/null || { \
	    echo "Under the floor: $$group (coverage report --include='$$group' --show-missing says where)"; exit 1; }; \
	done

.PHONY: e2e
e2e: install-dev ## Run only the browser tests (needs Debian's chromium: apt-get install chromium).
	$(VENV)/bin/pytest tests/e2e $(PYTEST_ARGS)

.PHONY: bench
bench: install-dev ## Run the benchmarks (each prints ratios against a baseline from the same run).
	$(PY) -m bench.field_encryption
	$(PY) -m bench.login_bruteforce
	$(PY) -m bench.audit_write
	$(PY) -m bench.rotate_keys
	$(PY) -m bench.row_binding
	$(PY) -m bench.detection
	$(PY) -m bench.verify_audit --events 200000
	$(PY) -m bench.import_fhir

.PHONY: lint
lint: install-dev ## Run ruff (lint and format check).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: install-dev ## Format the code and apply safe lint fixes.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: requirements
requirements: $(PY) ## Recompile requirements/*.txt from *.in (pinned, hashed).
	$(PIP) install --quiet pip-tools
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements/base.txt requirements/base.in
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements/dev.txt requirements/dev.in

.PHONY: secrets
secrets: install ## Print a fresh set of production secrets (nothing is written).
	$(PY) manage.py generate_secrets

.PHONY: clean
clean: ## Remove the virtualenv, the demo database and the demo secrets.
	rm -rf $(VENV) db.sqlite3 .dev-secrets.env staticfiles artifacts .pytest_cache .ruff_cache .mypy_cache .coverage
