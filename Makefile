# One command per job: make install | test | lint | demo | bench | build
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell if python3.13 --version >/dev/null 2>&1; then echo python3.13; \
           elif PYENV_VERSION=3.13.0 python3.13 --version >/dev/null 2>&1; then echo "env PYENV_VERSION=3.13.0 python3.13"; \
           else echo python3; fi)
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
# LocalStack (the stricter S3 of the integration tier, tests/s3servers.py) needs Python >= 3.12 and pins of its
# own: its venv is Python 3.13, which its lock is made for.
LOCALSTACK := .localstack
LOCALSTACK_PYTHON ?= $(shell if python3.13 --version >/dev/null 2>&1; then echo python3.13; \
           elif PYENV_VERSION=3.13.0 python3.13 --version >/dev/null 2>&1; then echo "env PYENV_VERSION=3.13.0 python3.13"; fi)
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help install localstack lock-localstack tools lint typecheck lint-template format test test-fast chaos soak demo bench build lock clean

help:
	@echo "make install  - create .venv (Python 3.13 when present) from the hashed lock: the project, the CLI, the local stack, dev tools"
	@echo "make localstack - create .localstack (Python 3.13) from its hashed lock: LocalStack's S3 for the integration tests"
	@echo "make test     - lint + the whole test suite with coverage (what CI runs)"
	@echo "make lint     - ruff, ruff format --check, mypy (strict on the product, checked on tests), sam validate --lint, cfn-lint, asl-validator, checkov"
	@echo "make format   - ruff format and ruff's safe fixes"
	@echo "make chaos    - the whole fault enumeration + CHAOS_CAMPAIGNS seeded random campaigns on the local engine"
	@echo "make soak     - SOAK_TENANTS x SOAK_DAYS backfill + three nightly ticks under faults; prints the soak's figures"
	@echo "make demo     - run the whole pipeline locally: simulator + local AWS engine, then read the data back"
	@echo "make bench    - transfer benchmark against the simple alternatives (writes BENCHMARKS.md)"
	@echo "make build    - sam build"
	@echo "make lock     - re-resolve requirements*.in into the hashed locks (after changing a dependency)"

# Dependencies come from the hashed locks (make lock), so every machine and every CI run gets the same code;
# the project and the local stack are then installed editable on top, without resolving anything.
$(BIN)/omborigrid-export: pyproject.toml local_stack/pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install $(PIP_QUIET) --require-hashes --no-deps -r requirements-dev.lock 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e . -e ./local_stack 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

install: $(BIN)/omborigrid-export localstack

# Without Python 3.13 it is left out with a warning (install still succeeds); the integration tests then say
# what to do, and run on moto with OMBORIGRID_TEST_S3=moto.
ifneq ($(LOCALSTACK_PYTHON),)
$(LOCALSTACK)/.installed: requirements-localstack.lock
	@test -x $(LOCALSTACK)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK)
	$(LOCALSTACK)/bin/pip install $(PIP_QUIET) --require-hashes --no-deps -r requirements-localstack.lock 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

localstack: $(LOCALSTACK)/.installed
else
localstack:
	@echo "warning: no Python 3.13 (python3.13, or pyenv's 3.13.0), so $(LOCALSTACK) (LocalStack's S3 for the integration tests) is not built"
endif

# SAM CLI and checkov pin conflicting versions of shared packages, so they live in their own venv.
$(TOOLS)/bin/sam: requirements-tools.lock
	@test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install $(PIP_QUIET) --require-hashes --no-deps -r requirements-tools.lock 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

node_modules/.bin/asl-validator: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	@touch $@

tools: $(TOOLS)/bin/sam node_modules/.bin/asl-validator

# uv resolves the .in files: the layer for the Lambda platform, development and tools for Python 3.11-3.13.
lock: install lock-localstack
	$(BIN)/pip install $(PIP_QUIET) "uv>=0.5" 2>&1 | grep -v "^WARNING: Location" || true
	cd layers/omborigrid && ../../$(BIN)/uv pip compile requirements.in --quiet --generate-hashes \
	    --python-platform aarch64-manylinux2014 --python-version 3.13 \
	    $(addprefix --no-emit-package ,boto3 botocore s3transfer python-dateutil six) -o requirements.txt
	$(BIN)/uv pip compile requirements-dev.in --quiet --universal --python-version 3.11 --generate-hashes \
	    --no-emit-package omborigrid-export --no-emit-package omborigrid-local -o requirements-dev.lock
	$(BIN)/uv pip compile requirements-tools.in --quiet --universal --python-version 3.11 --generate-hashes \
	    -o requirements-tools.lock

# LocalStack's lock is for its venv alone: Python 3.13 on x86-64 Linux (its dependencies do not resolve for 3.14).
lock-localstack: $(BIN)/omborigrid-export
	$(BIN)/pip install $(PIP_QUIET) "uv>=0.5" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/uv pip compile requirements-localstack.in --quiet --python-version 3.13 --python-platform x86_64-manylinux_2_28 \
	    --generate-hashes -o requirements-localstack.lock

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lint: install tools typecheck lint-template
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/asl-validator $(addprefix --json-path ,$(wildcard statemachine/*.asl.json))

# Strict on the product (layers/, functions/, cli/); tests, bench and the local stack checked too (pyproject.toml [tool.mypy]).
typecheck: install
	$(BIN)/mypy

lint-template: tools
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint --region eu-west-1
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

# Coverage of the product (pyproject.toml [tool.coverage]; CLI subprocesses included) with a floor.
test: lint
	$(BIN)/pytest -q --cov --cov-report=term:skip-covered --durations=15

test-fast: install
	$(BIN)/pytest -q -x

# Fault campaigns (tests/statemachine/faults): every (call site, fault kind) of the baseline scenario, one per run,
# and seeded random campaigns; each run is judged by the invariants. FAULT_SEED replays a campaign.
CHAOS_CAMPAIGNS ?= 5
FAULT_SEED ?= 11
chaos: install
	PYTHONUNBUFFERED=1 OMBORIGRID_CHAOS_CAMPAIGNS=$(CHAOS_CAMPAIGNS) OMBORIGRID_FAULT_SEED=$(FAULT_SEED) \
	    $(BIN)/pytest -q -s -p no:cacheprovider -m chaos tests/statemachine/faults/test_fault_campaign.py \
	    | grep --line-buffered -E '^\[(chaos|faults)\]|passed|failed|error'; test $${PIPESTATUS[0]} -eq 0

# The soak: issue 11's size by default; smaller with e.g. make soak SOAK_TENANTS=10 SOAK_DAYS=10.
SOAK_TENANTS ?= 50
SOAK_DAYS ?= 30
SOAK_RATE ?= 0.002
soak: install
	PYTHONUNBUFFERED=1 OMBORIGRID_SOAK_TENANTS=$(SOAK_TENANTS) OMBORIGRID_SOAK_DAYS=$(SOAK_DAYS) OMBORIGRID_SOAK_RATE=$(SOAK_RATE) \
	    OMBORIGRID_FAULT_SEED=$(FAULT_SEED) $(BIN)/pytest -q -s -p no:cacheprovider -m soak \
	    tests/statemachine/faults/test_soak.py | grep --line-buffered -E '^\[soak\]|passed|failed|error'; test $${PIPESTATUS[0]} -eq 0

demo: install
	$(BIN)/omborigrid-export demo

bench: install
	$(BIN)/pip install $(PIP_QUIET) -e ".[dev,bench]" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	# awscli v1 pins its own botocore, so it gets a venv of its own (a peer, not a dependency).
	test -x .cache/bench/awscli-venv/bin/aws || { $(PYTHON) -m venv .cache/bench/awscli-venv && \
	    .cache/bench/awscli-venv/bin/pip install $(PIP_QUIET) "awscli>=1.36"; }
	$(BIN)/python -m bench.run --write

# sam build (no container) needs the function runtime, python3.13, on PATH: use pyenv's when it is not.
build: tools
	PATH="$$(dirname "$$(command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null \
	    || PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || echo python3.13)"):$$PATH" \
	    SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam build

clean:
	rm -rf $(VENV) $(TOOLS) $(LOCALSTACK) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
