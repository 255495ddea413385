# rewrap — one command surface. `make demo` and `make test` set everything up from scratch.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12; use it when pyenv or the PATH has it, otherwise the default python3.
PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) \
                      $(shell command -v python3.12 2>/dev/null) $(shell command -v python3))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# LocalStack, the stricter second S3 for the tests, runs only on Python 3.13, in its own venv.
PYTHON313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) \
                         $(shell command -v python3.13 2>/dev/null))
LS_VENV := .venv-localstack
LS_STAMP := $(LS_VENV)/.installed-stamp

.PHONY: help install test test-moto test-localstack unit integration demo lint fmt bench soak soak-localstack clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml layers/rewrap/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r layers/rewrap/requirements.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install rewrap with its dev tools

$(LS_STAMP): local/localstack/requirements.txt local/localstack/constraints.txt
	@test -n "$(PYTHON313)" || { echo "LocalStack needs Python 3.13 (pyenv or PATH); none found" >&2; exit 1; }
	test -x $(LS_VENV)/bin/python || $(PYTHON313) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r local/localstack/requirements.txt -c local/localstack/constraints.txt
	touch $@

test: test-moto test-localstack ## every test on moto, then the S3-semantics suites again on LocalStack

test-moto: $(STAMP) ## run every test (unit + integration against moto and the NCP KMS emulator)
	$(BIN)/python -m pytest

test-localstack: $(STAMP) $(LS_STAMP) ## the S3-semantics suites (marker s3) against LocalStack on loopback
	local/localstack/run.sh $(LS_VENV) $(BIN)/python -m pytest --s3-backend=localstack

unit: $(STAMP) ## run the unit tests only
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) ## run the integration tests only
	$(BIN)/python -m pytest tests/integration

demo: $(STAMP) ## rotate a seeded bucket end to end on the embedded stack (loopback only)
	$(BIN)/python -m rewrap_local.demo

lint: $(STAMP) ## ruff, format check and cfn-lint on the SAM template
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml

bench: $(STAMP) ## throughput against a naive rotator and the S3 floor → docs/bench/ (about 6 minutes)
	$(BIN)/python -m rewrap_local.bench

soak: $(STAMP) ## fault-injection soak: every fault alone and mixed, then converged; prints the report
	$(BIN)/python -m rewrap_local.soak $(SOAK_ARGS)

soak-localstack: $(STAMP) $(LS_STAMP) ## the same soak against LocalStack on loopback
	local/localstack/run.sh $(LS_VENV) $(BIN)/python -m rewrap_local.soak $(SOAK_ARGS)

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtual environment and build output
	rm -rf $(VENV) $(LS_VENV) .aws-sam .pytest_cache .ruff_cache
