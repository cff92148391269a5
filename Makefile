.DEFAULT_GOAL := help
PY ?= python

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## Install Box Office with the test tools
	URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future pip install -e '.[test]'

demo: ## Seed the demo organisation and serve on http://127.0.0.1:8000
	boxoffice demo

migrate: ## Migrate the configured database
	boxoffice migrate

fmt: ## Format the code
	ruff format .
	ruff check --fix .

lint: ## Lint and check the import layers
	ruff check .
	ruff format --check .
	lint-imports

typecheck: ## mypy, strict on domain and services
	mypy

test: ## The whole suite (SQLite, and PostgreSQL when reachable)
	pytest

test-postgres: ## The database tests on PostgreSQL only, never skipped
	BOXOFFICE_REQUIRE_POSTGRES=1 BOXOFFICE_TEST_BACKENDS=postgresql pytest -m db -k postgresql

bench: ## Booking throughput and listing latency on PostgreSQL (see bench/README.md)
	$(PY) bench/bookings.py

ci: ## What CI runs
	bash .ci/run

.PHONY: help install demo migrate fmt lint typecheck test test-postgres bench ci
