"""Rotate function: every trigger route (S3, SQS, SNS→SQS, EventBridge, S3 Batch Operations, direct
requests) → the rotation engine → the response that route expects. Wiring only."""

from __future__ import annotations

from typing import Any

from rewrap.observability import logger, metrics, trace_handler
from rewrap.runtime import get_runtime
from rewrap.service import rotate_event


@logger.inject_lambda_context(log_event=False)
@trace_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return rotate_event(event, context, get_runtime())
