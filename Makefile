# linkup-sync developer commands. Every target sets up what it needs (virtual environment, packages).
SHELL := /bin/bash
PYTHON ?= python3
# The first Python 3.11 or newer among $(PYTHON), python3.13, python3.12 and python3.11 (AWS CloudShell's
# python3 is 3.9; `sudo dnf install -y python3.11` adds one). Empty when there is none: the targets say so.
PYTHON_OK := $(firstword $(foreach p,$(PYTHON) python3.13 python3.12 python3.11,$(if $(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo ok),$(p))))
VENV := .venv
BIN := $(VENV)/bin
# The light environment (make setup, make secret, make update): the package and its runtime packages only.
RUN_VENV ?= .venv-run
RUN_BIN := $(RUN_VENV)/bin
SAM_VENV := .venv-sam
# The sam CLI: the one already on PATH (AWS CloudShell has one), else our own in .venv-sam, installed
# on first use. `make build SAM=/path/to/sam` picks another one.
SAM_ON_PATH := $(shell command -v sam 2>/dev/null)
SAM ?= $(or $(SAM_ON_PATH),$(SAM_VENV)/bin/sam)
SAM_CLI_PACKAGE ?= aws-sam-cli==1.170.0
# make package / make publish: the S3 bucket the packaged artefacts go to, and the packaged template.
PACKAGE_BUCKET ?=
PACKAGED_TEMPLATE := .aws-sam/packaged.yaml
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1
# The unit tier: folders whose tests open no socket (make unit enforces it with --disable-socket).
UNIT_TESTS := tests/unit tests/property tests/template
# make test fails when the line coverage of the layer (linkup_sync, measured in the pytest processes; code
# run in a subprocess is not counted) falls below this percentage: a little under the 98.0 % of the full
# suite on 2026-12-06.
COV_FLOOR ?= 97.0
COVERAGE := --cov=linkup_sync --cov-report=term --cov-fail-under=$(COV_FLOOR)

.PHONY: help python-check run-env setup update venv lock test unit integration lint type docs docs-figures demo sandbox bench scale soak sam-cli build validate package-bucket package publish deploy logs invoke-local secret clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# Development and test tools come from the lock file (exact versions, the same on every clone); the
# project itself is installed on top without resolving anything again. `make lock` regenerates the lock.
# A half-built .venv (a failed pip, an old Python) is removed first, never reused.
$(BIN)/.installed: pyproject.toml requirements-dev.lock layers/linkup_sync/python/linkup_sync/__init__.py
	@$(MAKE) --no-print-directory python-check
	rm -rf $(VENV)
	$(PYTHON_OK) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet -e . --no-deps
	touch $@

python-check:
	@if [ -z "$(PYTHON_OK)" ]; then \
	  echo "linkup-sync needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1 || echo missing)." >&2; \
	  echo "In AWS CloudShell install it with:   sudo dnf install -y python3.11   then run make again." >&2; \
	  exit 2; fi

run-env: python-check ## the light environment .venv-run: linkup-sync and its runtime packages, rebuilt when stale
	@$(PYTHON_OK) tools/run_env.py $(RUN_VENV)

# Every answer can come from environment variables (`linkup-sync setup --help`); SETUP_ARGS=--yes asks nothing.
setup: run-env sam-cli ## guided set-up in AWS: LibreLink Up, Nightscout, alerts, deploy, first run (every step checked)
	@$(RUN_BIN)/linkup-sync setup --sam "$(SAM)" $(SETUP_ARGS)

update: run-env sam-cli ## bring the deployed stack to the newest release, with the answers make setup saved
	@$(RUN_BIN)/linkup-sync update --sam "$(SAM)"

venv: $(BIN)/.installed ## create .venv with the project and its development tools (from requirements-dev.lock)

# The deployed Powertools layer follows the lock: both templates name the version the tests ran.
lock: venv ## regenerate requirements-dev.lock from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade for newest), pin the templates' Powertools to it
	$(BIN)/pip-compile --quiet --strip-extras --extra dev --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links $(LOCK_ARGS) --output-file requirements-dev.lock pyproject.toml
	$(BIN)/python -m tools.pin_powertools

lint: venv ## ruff check and ruff format --check
	$(BIN)/ruff check layers cli functions tools tests
	$(BIN)/ruff format --check layers cli functions tools tests

type: venv ## mypy (strict) on the package, the handlers, the tools and the tests
	$(BIN)/mypy
	# The hosted stack's handlers are modules named app too: one mypy run each.
	$(BIN)/mypy functions/dispatch/app.py
	$(BIN)/mypy functions/worker/app.py

test: venv sam-cli ## the whole suite: lint, types, unit, integration (moto + simulators), template checks, sam CLI; the layer's line coverage
	$(BIN)/ruff check layers cli functions tools tests
	$(BIN)/ruff format --check layers cli functions tools tests
	$(MAKE) type
	$(MAKE) docs
	LINKUP_SYNC_SAM="$(SAM)" $(BIN)/pytest -n 2 -q $(COVERAGE)

unit: venv ## the unit tier: no sockets at all (pytest-socket), in-process fakes and moto only
	$(BIN)/pytest -n 2 -q --disable-socket $(UNIT_TESTS)

integration: venv ## everything not in the unit tier: loopback HTTP clients, simulators, the real handler, soak
	$(BIN)/pytest -n 2 -q $(addprefix --ignore=,$(UNIT_TESTS))

# The documentation site (mkdocs.yml, docs/): --strict turns every warning into a failure, and mkdocs.yml's
# `validation` makes a page missing from the nav or a broken link a warning. Offline: no plugin fetches.
# Never --quiet: it hides the warnings from --strict too, and a broken site would pass.
docs: venv ## build the documentation site into site/ (mkdocs --strict: a broken link or a page not in the nav fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-figures: venv ## rewrite the figure blocks of README.md and docs/ from docs/results/*.json, measuring nothing
	$(BIN)/python -m tools.docs_figures

demo: venv ## several simulated hours against local simulators and moto: no AWS, no credentials -> docs/results/demo.json
	$(BIN)/python -m tools.demo

bench: venv ## cold start, warm run, requests per run, memory, package size, the bill -> docs/results/bench.json
	$(BIN)/python -m tools.bench

# SCALE_ARGS=--accounts 1000 for a shorter run (the published block names the count measured).
SCALE_ARGS ?=
scale: venv ## the hosted stack: 10,000 accounts, one simulated hour; LibreLink Up rate, AWS units, cost per account -> docs/results/scale.json
	$(BIN)/python -m tools.scale $(SCALE_ARGS)

soak: venv ## 90 simulated days of scheduled runs with seeded faults; prints the summary table (a few minutes)
	$(BIN)/python -m tools.soak --days 90 --seed 1

$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet $(SAM_CLI_PACKAGE)

# Depends on the .venv-sam install only when no sam was found on PATH.
sam-cli: $(if $(filter $(SAM_VENV)/bin/sam,$(SAM)),$(SAM_VENV)/bin/sam) ## the sam CLI: from PATH, else installed into .venv-sam
	@$(SAM) --version

build: sam-cli ## sam build (pure Python: needs neither Docker nor python3.13)
	$(SAM) build
	test -f .aws-sam/build/SyncFunction/app.py  # sam build prints "Build Succeeded" even when it built nothing

build-hosted: sam-cli ## sam build of hosted.yaml into .aws-sam/hosted (samconfig.toml's "hosted" environment)
	$(SAM) build --config-env hosted
	test -f .aws-sam/hosted/SyncWorkerFunction/app.py

deploy-hosted: build-hosted ## sam deploy of the hosted stack; guided until --guided saved its parameter_overrides
	if sed -n '/^\[hosted.deploy.parameters\]/,/^\[/p' samconfig.toml | grep -q '^parameter_overrides'; then \
	  $(SAM) deploy --config-env hosted; else $(SAM) deploy --config-env hosted --guided; fi

validate: sam-cli ## sam validate and sam validate --lint, of template.yaml and hosted.yaml
	$(SAM) validate --region us-east-1
	$(SAM) validate --lint --region us-east-1
	$(SAM) validate --template hosted.yaml --region us-east-1
	$(SAM) validate --lint --template hosted.yaml --region us-east-1

package-bucket:
	@test -n "$(PACKAGE_BUCKET)" || { echo "make package: set PACKAGE_BUCKET=<S3 bucket in the region to publish to>" >&2; exit 1; }

package: package-bucket build ## sam build, then sam package into the S3 bucket PACKAGE_BUCKET -> .aws-sam/packaged.yaml
	$(SAM) package --s3-bucket "$(PACKAGE_BUCKET)" --output-template-file $(PACKAGED_TEMPLATE)

publish: sam-cli ## sam publish of .aws-sam/packaged.yaml to the Serverless Application Repository (after make package)
	test -f $(PACKAGED_TEMPLATE) || { echo "make publish: run make package PACKAGE_BUCKET=... first" >&2; exit 1; }
	$(SAM) publish --template $(PACKAGED_TEMPLATE)

deploy: build ## sam deploy; guided the first time (until make setup or `sam deploy --guided` saved the answers)
	if sed -n '/^\[default.deploy.parameters\]/,/^\[/p' samconfig.toml | grep -q '^parameter_overrides\|^# saved by linkup-sync setup'; then \
	  $(SAM) deploy; else $(SAM) deploy --guided; fi

logs: sam-cli ## follow the function's logs (sam logs -t)
	$(SAM) logs --stack-name $${STACK_NAME:-linkup-sync} -n SyncFunction -t

invoke-local: build ## sam local invoke with events/scheduled.json and env.json (needs Docker)
	test -f env.json || (echo "Copy events/env.json.example to env.json and fill it in first." && exit 1)
	command -v docker >/dev/null || (echo "sam local invoke needs Docker; without it: python -m tools.run_handler" && exit 1)
	$(SAM) local invoke SyncFunction -e events/scheduled.json -n env.json

# The values come from environment variables (never a command line, visible in `ps`, and never echoed).
# tools/secret.py checks them with the function's own rules before it stores anything. SECRET_ID
# defaults to the output CredentialsSecretArn of the stack $STACK_NAME (default linkup-sync).
secret: run-env ## check, then store the secret from LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN
	@$(RUN_BIN)/python -m tools.secret

sandbox: venv ## LibreLink Up simulator, Nightscout stand-in and moto on 127.0.0.1 for the README's commands; Ctrl-C stops
	@$(BIN)/python -m tools.sandbox

clean: ## remove build output, caches, the light environment, and a .venv that cannot import linkup_sync
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache site $(RUN_VENV)
	if [ -d $(VENV) ] && ! $(BIN)/python -c 'import sys, linkup_sync; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	  echo "removing the broken $(VENV)"; rm -rf $(VENV); fi
