"""Sweep function: on a schedule (or by hand), list the sweep targets and enqueue rotate requests;
hand over to a follow-up invocation when the listing outlasts this one. Wiring only."""

from __future__ import annotations

from typing import Any

from rewrap.observability import logger, metrics, trace_handler
from rewrap.runtime import get_runtime, invoke_self_async
from rewrap.sweep import sweep_event


@logger.inject_lambda_context(log_event=False)
@trace_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    runtime = get_runtime()
    return sweep_event(
        event,
        context,
        runtime.settings,
        runtime.store,
        runtime.rotate_queue,
        runtime.kms,
        invoke_self_async(runtime, context),
    )
