# linkup-sync developer commands. Every target sets up what it needs (virtual environment, packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv test lint type demo sandbox bench soak build validate deploy logs invoke-local secret clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(BIN)/.installed ## create .venv with the project and its development tools

lint: venv ## ruff
	$(BIN)/ruff check layers functions tools tests

type: venv ## mypy (strict) on the package, the handler and the tools
	$(BIN)/mypy

test: venv ## the whole suite: lint, types, unit, integration (moto + simulators), template checks
	$(BIN)/ruff check layers functions tools tests
	$(BIN)/mypy
	$(BIN)/pytest -n 2 -q

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

# The values come from environment variables (never a command line, visible in `ps`, and never echoed).
# tools/secret.py checks them with the function's own rules before it stores anything. SECRET_ID
# defaults to the output CredentialsSecretArn of the stack $STACK_NAME (default linkup-sync).
secret: venv ## check, then store the secret from LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN
	@$(BIN)/python -m tools.secret

sandbox: venv ## LibreLink Up simulator, Nightscout stand-in and moto on 127.0.0.1 for the README's commands; Ctrl-C stops
	@$(BIN)/python -m tools.sandbox

clean: ## remove build output and caches
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache bench-results.json
