# One command per job: make install | test | lint | demo | bench | build
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell if python3.13 --version >/dev/null 2>&1; then echo python3.13; \
           elif PYENV_VERSION=3.13.0 python3.13 --version >/dev/null 2>&1; then echo "env PYENV_VERSION=3.13.0 python3.13"; \
           else echo python3; fi)
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help install tools lint test test-fast demo bench build clean

help:
	@echo "make install  - create .venv (Python 3.13 when present) with the project, the CLI and dev tools"
	@echo "make test     - lint + the whole test suite (what CI runs)"
	@echo "make lint     - ruff, ruff format --check, mypy --strict, sam validate --lint, cfn-lint, asl-validator, checkov"
	@echo "make demo     - run the whole pipeline locally: simulator + local AWS engine, then read the data back"
	@echo "make bench    - transfer benchmark against the simple alternatives (writes BENCHMARKS.md)"
	@echo "make build    - sam build"

$(BIN)/omborigrid-export: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install $(PIP_QUIET) -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

install: $(BIN)/omborigrid-export

# SAM CLI and checkov pin conflicting versions of shared packages, so they live in their own venv.
$(TOOLS)/bin/sam:
	@test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install $(PIP_QUIET) "aws-sam-cli>=1.130" "checkov>=3.2" "cfn-lint>=1.20" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

node_modules/.bin/asl-validator: package.json
	npm install --silent --no-audit --no-fund
	@touch $@

tools: $(TOOLS)/bin/sam node_modules/.bin/asl-validator

lint: install tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint --region eu-west-1
	$(TOOLS)/bin/cfn-lint template.yaml
	node_modules/.bin/asl-validator $(addprefix --json-path ,$(wildcard statemachine/*.asl.json))
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

test: lint
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -x

demo: install
	$(BIN)/omborigrid-export demo

bench: install
	$(BIN)/pip install $(PIP_QUIET) -e ".[dev,bench]" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m bench.run --write

# sam build (no container) needs the function runtime, python3.13, on PATH: use pyenv's when it is not.
build: tools
	PATH="$$(dirname "$$(command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null \
	    || PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || echo python3.13)"):$$PATH" \
	    SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam build

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
