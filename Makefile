# rewrap — one command surface. `make demo` and `make test` set everything up from scratch.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12; use it when pyenv or the PATH has it, otherwise the default python3.
PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) \
                      $(shell command -v python3.12 2>/dev/null) $(shell command -v python3))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# SAM CLI and checkov pin their own boto3/click/pydantic: each gets a virtual environment of its own.
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM := .venv-sam/bin/sam
CHECKOV := .venv-checkov/bin/checkov
# sam build finds the runtime's python3.12 on the PATH; the layer's makefile compiles with $(PYTHON).
SAM_ENV := PATH="$(dir $(PYTHON)):$$PATH" PYTHON="$(PYTHON)" SAM_CLI_TELEMETRY=0
# LocalStack, the stricter second S3 for the tests, runs only on Python 3.13, in its own venv.
PYTHON313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) \
                         $(shell command -v python3.13 2>/dev/null))
LS_VENV := .venv-localstack
LS_STAMP := $(LS_VENV)/.installed-stamp

.PHONY: help install docs lock package test test-moto test-localstack unit infrastructure integration artifact demo lint fmt bench bench-path \
	bench-path-localstack bench-fleet soak \
	soak-localstack clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml layers/rewrap/requirements.txt requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-dev.lock -r layers/rewrap/requirements.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install rewrap with its dev tools, at the versions of requirements-dev.lock

docs: $(STAMP) ## regenerate docs/configuration.md from SETTINGS and the template
	$(BIN)/python tools/configuration_doc.py

lock: $(STAMP) ## re-resolve the dependencies: requirements-dev.lock and the layer's requirements.lock
	$(BIN)/python tools/lock.py

$(SAM): Makefile
	test -x $@ || $(PYTHON) -m venv .venv-sam
	.venv-sam/bin/python -m pip install --quiet --upgrade pip
	.venv-sam/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

$(CHECKOV): Makefile
	test -x $@ || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

$(LS_STAMP): local/localstack/requirements.txt local/localstack/constraints.txt
	@test -n "$(PYTHON313)" || { echo "LocalStack needs Python 3.13 (pyenv or PATH); none found" >&2; exit 1; }
	test -x $(LS_VENV)/bin/python || $(PYTHON313) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet -r local/localstack/requirements.txt -c local/localstack/constraints.txt
	touch $@

package: $(SAM) ## sam build: the deployable functions and layer in .aws-sam/build (what the artifact tests run)
	$(SAM_ENV) $(SAM) build --template template.yaml

test: test-moto test-localstack ## every test on moto (built artifacts included), then the S3 suites on LocalStack

# Two workers, one per core: a worker's tests and its moto and emulator threads share one interpreter (one GIL),
# so a second process is what uses the second core. Whole files go to one worker (their fixtures are per file).
PYTEST_WORKERS ?= 2
COVERAGE_FLOOR := 85

test-moto: $(STAMP) package ## every tier against moto and the NCP KMS emulator, built artifacts included; prints coverage
	COVERAGE_CORE=sysmon $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

test-localstack: $(STAMP) $(LS_STAMP) ## the S3-semantics suites (marker s3) against LocalStack on loopback
	local/localstack/run.sh $(LS_VENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --s3-backend=localstack

unit: $(STAMP) ## the unit tier: no server, no network (seconds)
	$(BIN)/python -m pytest tests/unit

infrastructure: $(STAMP) ## the template and IAM tier: the SAM transform, cfn-lint, the roles' statements; no server
	$(BIN)/python -m pytest tests/infrastructure

integration: $(STAMP) ## run the integration tests only
	$(BIN)/python -m pytest tests/integration

artifact: $(STAMP) package ## build, then run the built functions in a clean Python 3.12 against the embedded stack
	$(BIN)/python -m pytest tests/artifact

demo: $(STAMP) ## rotate a seeded bucket end to end on the embedded stack (loopback only)
	$(BIN)/python -m rewrap_local.demo

lint: $(STAMP) $(SAM) $(CHECKOV) ## ruff, format check, mypy, cfn-lint, sam validate --lint and checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	$(CHECKOV) --file template.yaml --framework cloudformation --skip-download --compact --quiet

bench: $(STAMP) package ## throughput against a naive rotator and the S3 floor → docs/bench/ (about 6 minutes)
	$(BIN)/python -m rewrap_local.bench

bench-path: $(STAMP) ## S3 requests, wall and CPU per rotated object through the SQS route vs the GET+PUT floor → docs/bench/path-moto.md
	$(BIN)/python -m rewrap_local.bench.path

bench-path-localstack: $(STAMP) $(LS_STAMP) ## the same against LocalStack → docs/bench/path-localstack.md
	local/localstack/run.sh $(LS_VENV) $(BIN)/python -m rewrap_local.bench.path --localstack

bench-fleet: $(STAMP) ## census and rotation through sweep → SQS → rotate containers at 1k/5k/20k objects → docs/bench/fleet.md
	$(BIN)/python -m rewrap_local.bench.fleet $(FLEET_ARGS)

soak: $(STAMP) ## fault-injection soak: every fault alone and mixed, then converged; prints the report
	$(BIN)/python -m rewrap_local.soak $(SOAK_ARGS)

soak-localstack: $(STAMP) $(LS_STAMP) ## the same soak against LocalStack on loopback
	local/localstack/run.sh $(LS_VENV) $(BIN)/python -m rewrap_local.soak $(SOAK_ARGS)

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtual environment and build output
	rm -rf $(VENV) .venv-sam .venv-checkov $(LS_VENV) .aws-sam .pytest_cache .ruff_cache
