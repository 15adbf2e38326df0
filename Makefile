# linkup-sync developer commands. Every target sets up what it needs (virtual environment, packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1
# The unit tier: folders whose tests open no socket (make unit enforces it with --disable-socket).
UNIT_TESTS := tests/unit tests/property tests/template

.PHONY: help venv lock test unit integration lint type demo bench soak build validate deploy logs invoke-local secret clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# Development and test tools come from the lock file (exact versions, the same on every clone); the
# project itself is installed on top without resolving anything again. `make lock` regenerates the lock.
$(BIN)/.installed: pyproject.toml requirements-dev.lock layers/linkup_sync/python/linkup_sync/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet -e . --no-deps
	touch $@

venv: $(BIN)/.installed ## create .venv with the project and its development tools (from requirements-dev.lock)

lock: venv ## regenerate requirements-dev.lock from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade for newest)
	$(BIN)/pip-compile --quiet --strip-extras --extra dev --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links $(LOCK_ARGS) --output-file requirements-dev.lock pyproject.toml

lint: venv ## ruff check and ruff format --check
	$(BIN)/ruff check layers functions tools tests
	$(BIN)/ruff format --check layers functions tools tests

type: venv ## mypy (strict) on the package, the handler and the tools
	$(BIN)/mypy

test: venv ## the whole suite: lint, types, unit, integration (moto + simulators), template checks
	$(BIN)/ruff check layers functions tools tests
	$(BIN)/ruff format --check layers functions tools tests
	$(BIN)/mypy
	$(BIN)/pytest -n 2 -q

unit: venv ## the unit tier: no sockets at all (pytest-socket), in-process fakes and moto only
	$(BIN)/pytest -n 2 -q --disable-socket $(UNIT_TESTS)

integration: venv ## everything not in the unit tier: loopback HTTP clients, simulators, the real handler, soak
	$(BIN)/pytest -n 2 -q $(addprefix --ignore=,$(UNIT_TESTS))

demo: venv ## several simulated hours against local simulators and moto: no AWS, no credentials
	$(BIN)/python -m tools.demo

bench: venv ## cold start, warm run, requests per run, memory, package size -> bench-results.json
	$(BIN)/python -m tools.bench

soak: venv ## 90 simulated days of scheduled runs with seeded faults; prints the summary table (a few minutes)
	$(BIN)/python -m tools.soak --days 90 --seed 1

build: ## sam build (installs aws-sam-cli in its own virtual environment)
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	$(SAM_VENV)/bin/sam build
	test -f .aws-sam/build/SyncFunction/app.py  # sam build prints "Build Succeeded" even when it built nothing

validate: ## sam validate and sam validate --lint
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	$(SAM_VENV)/bin/sam validate --region us-east-1
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

deploy: build ## sam deploy; guided the first time (until `sam deploy --guided` saved parameter_overrides)
	if grep -q '^parameter_overrides' samconfig.toml; then \
	  $(SAM_VENV)/bin/sam deploy; else $(SAM_VENV)/bin/sam deploy --guided; fi

logs: ## follow the function's logs (sam logs -t)
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	$(SAM_VENV)/bin/sam logs --stack-name $${STACK_NAME:-linkup-sync} -n SyncFunction -t

invoke-local: build ## sam local invoke with events/scheduled.json and env.json (needs Docker)
	test -f env.json || (echo "Copy events/env.json.example to env.json and fill it in first." && exit 1)
	command -v docker >/dev/null || (echo "sam local invoke needs Docker; without it: python -m tools.run_handler" && exit 1)
	$(SAM_VENV)/bin/sam local invoke SyncFunction -e events/scheduled.json -n env.json

# The secret's JSON, built from environment variables by Python and piped to the AWS CLI: no value is
# ever part of a command line (visible in `ps`) or echoed. SECRET_ID defaults to the stack's output.
SECRET_KEYS := ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")
SECRET_CHECK := import os, sys; missing = [k for k in $(SECRET_KEYS) if not os.environ.get(k, "").strip()]; \
  sys.exit("make secret: set " + ", ".join(missing) + " in the environment first") if missing else None
SECRET_JSON := import json, os, sys; sys.stdout.write(json.dumps({k: os.environ[k] for k in $(SECRET_KEYS)}))

secret: ## write the secret from the variables LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN
	@set -euo pipefail; \
	$(PYTHON) -c '$(SECRET_CHECK)'; \
	id="$${SECRET_ID:-}"; \
	if [ -z "$$id" ]; then \
	  id=$$(aws cloudformation describe-stacks --stack-name "$${STACK_NAME:-linkup-sync}" --output text \
	    --query "Stacks[0].Outputs[?OutputKey=='CredentialsSecretArn'].OutputValue"); \
	fi; \
	if [ -z "$$id" ] || [ "$$id" = None ]; then echo "make secret: set SECRET_ID (stack output CredentialsSecretArn)" >&2; exit 1; fi; \
	$(PYTHON) -c '$(SECRET_JSON)' | aws secretsmanager put-secret-value --secret-id "$$id" \
	  --secret-string file:///dev/stdin --query VersionId --output text >/dev/null; \
	echo "Stored the credentials in $$id (the values are not shown)."

clean: ## remove build output and caches
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache bench-results.json
