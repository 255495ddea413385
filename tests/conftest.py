"""What every tier shares: an environment that can never reach a real account, and the choice of AWS
stand-in (``--s3-backend``). The servers themselves are started by tests/stack_fixtures.py, which only the
tiers that need them load (integration, artifact): the unit and infrastructure tiers start nothing.

The AWS stand-in is moto unless ``--s3-backend=localstack``: then only the tests marked ``s3`` run, against
the LocalStack at ``REWRAP_TEST_S3_ENDPOINT`` (``make test-localstack`` starts one), which enforces
conditional copies, SSE-C and archive states that moto ignores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Rewrap")
os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-2")
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ[name] = "testing"  # never reach a real account from the test suite


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--s3-backend",
        choices=("moto", "localstack"),
        default=os.environ.get("REWRAP_TEST_S3_BACKEND", "moto"),
        help="AWS stand-in for the tests: moto (started here) or LocalStack at REWRAP_TEST_S3_ENDPOINT",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On LocalStack only the S3-semantics suites (marker ``s3``) run; the rest needs nothing it adds."""
    if config.getoption("--s3-backend") != "localstack":
        return
    selected = [item for item in items if item.get_closest_marker("s3")]
    config.hook.pytest_deselected(items=[item for item in items if not item.get_closest_marker("s3")])
    items[:] = selected
