"""Shared fixtures: one moto server and one NCP KMS emulator per session (both on loopback); each
test gets its own bucket, key, secret and queues on them, so tests never see each other's state."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from rewrap.runtime import Runtime, reset_runtime
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.stack import LocalStack, environment, provision, running_servers

_buckets = itertools.count(1)

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Rewrap")
os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-2")
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ[name] = "testing"  # never reach a real account from the test suite


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, Any]]:
    with running_servers(seed=7) as pair:
        yield pair


@pytest.fixture
def stack(servers: tuple[str, Any]) -> Iterator[LocalStack]:
    moto_url, kms = servers
    kms.clear_faults()
    kms.reset_switches()
    kms.set_latency(0)
    yield provision(moto_url, kms, bucket=f"rewrap-test-{next(_buckets)}")
    kms.clear_faults()
    kms.reset_switches()


@pytest.fixture
def runtime(stack: LocalStack) -> Iterator[Runtime]:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    built = stack.runtime()
    yield built
    built.kms.http.close()


@pytest.fixture
def handler_env(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack's configuration in the environment, as the deployed handlers would read it."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    reset_runtime()
    with environment(stack.environment()):
        yield stack
    reset_runtime()


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
