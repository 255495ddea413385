"""Powertools logger and metrics shared by the functions, and X-Ray tracing when it is switched on (a
neutral module: the engine and adapters do not depend on it). The service name and the namespace come
from the POWERTOOLS_* variables; "rewrap" / "Rewrap" when they are unset."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "rewrap"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Rewrap"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def key_metric(name: str, value: float, key_tag: str) -> None:
    """One metric of one key (dimensions service and KeyTag), emitted at once: the shared ``metrics`` flush
    carries the service dimension only."""
    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE, default_dimensions={"service": SERVICE}
    ) as metric:
        metric.add_dimension(name="KeyTag", value=key_tag)


Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Tracing runs only inside Lambda (not under `sam local`) and when POWERTOOLS_TRACE_DISABLED is not
    true; the template sets that variable from its Tracing parameter."""
    disabled = env.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in {"1", "true", "yes"}
    return "AWS_LAMBDA_FUNCTION_NAME" in env and not env.get("AWS_SAM_LOCAL") and not disabled


def trace_handler(handler: Handler) -> Handler:
    """An X-Ray segment around the handler when tracing is on. The X-Ray SDK is imported only then: it
    costs about 0.4 s of every cold start, more than the rest of the functions' imports together."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    traced: Handler = Tracer(service=SERVICE).capture_lambda_handler(capture_response=False)(handler)
    return traced
