"""The servers and per-test resources of the tiers that need them: one AWS stand-in and one NCP KMS emulator
per session (both on loopback); each test gets its own bucket, key, secret and queues on them, so tests
never see each other's state. Loaded by the integration and artifact tiers' conftest files."""

from __future__ import annotations

import dataclasses
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities import parameters

from rewrap.app.runtime import Runtime, reset_runtime
from rewrap_local.emulator import KmsEmulator
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.stack import LocalStack, environment, provision, running_servers

_buckets = itertools.count(1)
# LocalStack keeps its buckets for as long as it runs: names unique to this pytest run.
_RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def s3_backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--s3-backend"))


@pytest.fixture(scope="session")
def servers(s3_backend: str) -> Iterator[tuple[str, Any]]:
    if s3_backend == "moto":
        with running_servers(seed=7) as pair:
            yield pair
        return
    endpoint = os.environ.get("REWRAP_TEST_S3_ENDPOINT", "")
    if not endpoint.startswith(("http://127.", "http://localhost")):
        pytest.exit("--s3-backend=localstack needs REWRAP_TEST_S3_ENDPOINT on loopback (make test-localstack)", 2)
    kms = KmsEmulator(seed=7).start()
    try:
        yield endpoint, kms
    finally:
        kms.stop()


@pytest.fixture
def stack(servers: tuple[str, Any], s3_backend: str) -> Iterator[LocalStack]:
    aws_url, kms = servers
    kms.clear_faults()
    kms.reset_switches()
    kms.set_latency(0)
    suffix = f"-{_RUN}" if s3_backend == "localstack" else ""
    yield provision(aws_url, kms, bucket=f"rewrap-test-{next(_buckets)}{suffix}", backend=s3_backend)
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


RuntimeFactory = Callable[..., tuple[Runtime, list[httpx.Request]]]


@pytest.fixture
def make_runtime(stack: LocalStack) -> Iterator[RuntimeFactory]:
    """A wired runtime speaking one API generation to the emulator (credentials from moto's Secrets
    Manager), and the KMS requests it sends."""
    built: list[Runtime] = []

    def make(api: str, **overrides: Any) -> tuple[Runtime, list[httpx.Request]]:
        parameters.clear_caches()
        runtime = dataclasses.replace(stack, api=api).runtime(**overrides)
        sent: list[httpx.Request] = []
        runtime.kms.http.event_hooks = {"request": [sent.append], "response": []}
        built.append(runtime)
        return runtime, sent

    yield make
    for runtime in built:
        runtime.kms.http.close()
