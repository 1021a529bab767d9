# casegate — every task a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: setup
setup: $(STAMP) system-deps ## create the venv, install Python and OS dependencies (idempotent)

# Every install is pinned by constraints.txt (`make lock` rewrites it), so a fresh machine
# gets the versions the tests last passed with.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "casegate needs Python >= 3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

.PHONY: lock
lock: ## re-resolve the dependencies to their newest allowed versions into constraints.txt
	@rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install -q --upgrade pip
	$(VENV)-lock/bin/pip install -q -e '.[test,otlp]'
	@{ echo "# pinned by \`make lock\`: every install of casegate and its test tools"; \
	  $(VENV)-lock/bin/pip freeze --exclude-editable | LC_ALL=C sort -f; } > constraints.txt
	@rm -rf $(VENV)-lock
	@echo "constraints.txt rewritten; run make setup and the tests before committing it"

.PHONY: audit
audit: setup ## known vulnerabilities in the pinned dependencies (needs the PyPI JSON API)
	$(VENV)/bin/pip-audit --strict --progress-spinner off --no-deps --disable-pip -r constraints.txt

.PHONY: system-deps
system-deps:
	@bash infra/system-deps.sh

.PHONY: up
up: setup ## start local Kafka and PostgreSQL, create topics, apply migrations
	$(VENV)/bin/casegate up

.PHONY: down
down: ## stop local Kafka and PostgreSQL
	@if [ -x $(VENV)/bin/casegate ]; then $(VENV)/bin/casegate down; fi

.PHONY: run
run: setup ## the whole system on local Kafka and PostgreSQL with a demo workload
	$(VENV)/bin/casegate run --demo

.PHONY: test
test: setup ## every test, against a real Kafka broker and PostgreSQL (started if needed)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: unit
unit: setup ## only the fast tests that need no broker or database
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: bench
bench: setup ## throughput, latency and memory vs raw Kafka (QUICK=1: a seconds-long smoke run)
	$(PY) -m bench $(if $(QUICK),--quick,)

.PHONY: chaos
chaos: setup ## fault injection: 20,000 cases under SIGKILLs and broker/PostgreSQL restarts (CASES=N, QUICK=1)
	$(PY) -m tests.chaos $(if $(CASES),--cases $(CASES),) $(if $(QUICK),--quick,)

.PHONY: docs
docs: setup ## regenerate docs/policy-reference.md from the policy model
	$(VENV)/bin/casegate policy reference

.PHONY: lint
lint: setup ## check style and types (changes nothing)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory audit

.PHONY: fmt
fmt: setup ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
