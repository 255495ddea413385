# rewrap — one command surface. `make demo` and `make test` set everything up from scratch.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12; use it when pyenv or the PATH has it, otherwise the default python3.
PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) \
                      $(shell command -v python3.12 2>/dev/null) $(shell command -v python3))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help install test unit integration demo lint fmt bench soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml layers/rewrap/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r layers/rewrap/requirements.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install rewrap with its dev tools

test: $(STAMP) ## run every test (unit + integration against moto and the NCP KMS emulator)
	$(BIN)/python -m pytest

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

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtual environment and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache
