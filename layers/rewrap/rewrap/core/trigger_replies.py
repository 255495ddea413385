"""What the SQS and S3 Batch Operations triggers expect back, for the rotate and the census routes alike.

- SQS: only messages with a retryable failure are returned in ``batchItemFailures``. A message that failed
  permanently is forwarded to the dead-letter queue with its reason (when REWRAP_DEAD_LETTER_QUEUE_URL is set)
  and acknowledged, so it is neither retried nor lost; of a rotate request only the keys that failed are parked
  (``parking``). A message the dead-letter queue refuses stays on its queue, logged and counted.
- S3 Batch Operations: one result per task (Succeeded / TemporaryFailure / PermanentFailure).
"""

from __future__ import annotations

from typing import Any

from rewrap.core.events import Invocation, Unit
from rewrap.core.parking import park
from rewrap.core.ports import DeadLetterSink, ObjectRef
from rewrap.core.results import ObjectResult
from rewrap.errors import RewrapError
from rewrap.observability import logger

BATCH_RESULT_STRING_LIMIT = 900


def sqs_reply(
    invocation: Invocation,
    outcomes: list[tuple[Unit, RewrapError | None]],
    dead_letters: DeadLetterSink | None,
    by_ref: dict[ObjectRef, ObjectResult] | None = None,
    report: str | None = None,
) -> dict[str, Any]:
    """The SQS response for each message's deciding error; ``by_ref`` (rotate requests) lets a
    parked message keep only its failed keys, and ``report`` (this invocation's) holds each key's reason."""
    failures = []
    records = {str(r.get("messageId", "")): r for r in invocation.raw.get("Records", [])}
    for unit, error in outcomes:
        if error is None:
            continue
        if error.retryable or not unit.id:
            failures.append({"itemIdentifier": unit.id})
            continue
        logger.warning("message failed permanently", extra={"messageId": unit.id, "reason": error.reason})
        if dead_letters is not None:
            body = str(records.get(unit.id, {}).get("body", ""))
            if not park(dead_letters, unit, error, body, by_ref, report):
                failures.append({"itemIdentifier": unit.id})
    return {"batchItemFailures": failures}


def task_result(unit: Unit, code: str, text: str) -> dict[str, Any]:
    return {"taskId": unit.id, "resultCode": code, "resultString": text[:BATCH_RESULT_STRING_LIMIT]}


def failed_task(unit: Unit, error: RewrapError) -> dict[str, Any]:
    return task_result(unit, "TemporaryFailure" if error.retryable else "PermanentFailure", error.reason)


def batch_operations_reply(invocation: Invocation, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "invocationSchemaVersion": invocation.raw.get("invocationSchemaVersion"),
        # A task we failed to answer is retried rather than silently counted as done.
        "treatMissingKeysAs": "TemporaryFailure",
        "invocationId": invocation.raw.get("invocationId"),
        "results": results,
    }
