"""The two Lambda entry points, wiring only: the deployed ``functions/*/app.py`` re-export them, and
the demo and tests call the same objects."""

from __future__ import annotations

from typing import Any

from rewrap.app.runtime import get_runtime
from rewrap.core.dispatch import rotate_event
from rewrap.core.sweep import sweep_event
from rewrap.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(log_event=False)
@trace_handler
@metrics.log_metrics
def rotate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every trigger route (S3, SQS, SNS→SQS, EventBridge, S3 Batch Operations, direct requests) → the
    rotation engine → the response that route expects."""
    return rotate_event(event, context, get_runtime())


@logger.inject_lambda_context(log_event=False)
@trace_handler
@metrics.log_metrics
def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """On a schedule (or by hand): list the sweep targets and enqueue rotate requests; hand over to a
    follow-up invocation when the listing outlasts this one."""
    return sweep_event(event, context, get_runtime())
