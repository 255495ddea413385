"""Parking: a message that failed permanently goes to the dead-letter queue with its reason, within the queue's
size, so it is neither retried pointlessly nor lost; a redrive replays it once the cause is fixed.

Of a rotate request only the failed keys are parked, each with its reason. When the reasons key by key would
not fit a message, they are summarised by reason (a count and a few keys each), with a reference to the
invocation's report under REWRAP_REPORT_PREFIX, which holds every key's own reason (so does the log). When the
keys alone do not fit, or are more than a request may hold, they are parked in parts, each a rotate request.
Any other message is parked as it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.chunks import chunk_by_size
from rewrap.core.config import MAX_KEYS_PER_REQUEST
from rewrap.core.events import Unit
from rewrap.core.ports import MESSAGE_LIMIT_BYTES, DeadLetterSink, ObjectRef
from rewrap.core.results import ObjectResult
from rewrap.errors import RewrapError
from rewrap.observability import logger, metrics

# A part's keys take at most half a message and its reason summary a quarter, so the two always fit together with
# the bucket and the report's URL.
PART_KEYS_BYTES = MESSAGE_LIMIT_BYTES // 2
SUMMARY_BYTES = MESSAGE_LIMIT_BYTES // 4
REASON_CHARS = 300  # of each reason in a summary
EXAMPLE_KEYS = 3  # keys named with each reason in a summary


def park(
    dead_letters: DeadLetterSink,
    unit: Unit,
    error: RewrapError,
    body: str,
    by_ref: dict[ObjectRef, ObjectResult] | None,
    report: str | None = None,
) -> bool:
    """Forward what to keep of the message ``unit`` to the dead-letter queue; False when the queue refused it
    (logged with its class and counted in ``ParkingFailures``: the caller leaves the message on its queue, where
    it comes back and SQS's own redrive moves it after maxReceiveCount)."""
    bodies = parked_bodies(body, unit, by_ref, report) if by_ref is not None else [body]
    try:
        for parked in bodies:
            dead_letters.forward(parked, error.reason, unit.id)
    except RewrapError as failed:
        # A message parked twice is harmless: a redrive replays keys already done as current.
        logger.error(
            "message not parked",
            extra={
                "messageId": unit.id,
                "reason": failed.reason,
                "errorClass": "retryable" if failed.retryable else "permanent",
                "parkedFor": error.reason,
            },
        )
        metrics.add_metric(name="ParkingFailures", unit=MetricUnit.Count, value=1)
        return False
    metrics.add_metric(name="MessagesParked", unit=MetricUnit.Count, value=1)
    return True


def parked_bodies(body: str, unit: Unit, by_ref: dict[ObjectRef, ObjectResult], report: str | None = None) -> list[str]:
    """The bodies to park for ``unit``, each within ``MESSAGE_LIMIT_BYTES`` when it is a rotate request; a
    summarised one names ``report``, the invocation's report of every object's result."""
    try:
        request = json.loads(body)
    except ValueError:
        return [body]
    if not (isinstance(request, dict) and isinstance(request.get("bucket"), str) and "keys" in request):
        return [body]
    if unit.error is None:
        failed = [ref for ref in unit.refs if by_ref[ref].error is not None]
        reasons = {ref: by_ref[ref].error.reason for ref in failed}  # type: ignore[union-attr]  # failed: error set
    else:  # the request itself was refused (too many keys, a dry run, ...): as it came, while it fits
        failed = _named_refs(request)
        if not failed or len(body.encode()) <= MESSAGE_LIMIT_BYTES:
            return [body]
        reasons = dict.fromkeys(failed, unit.error.reason)
        report = None  # its objects were never looked at: the report does not name them
    bucket = request["bucket"]
    whole = _parked_request(bucket, failed, [{"key": ref.key, "reason": reasons[ref]} for ref in failed])
    if unit.error is None and len(whole.encode()) <= MESSAGE_LIMIT_BYTES and len(failed) <= MAX_KEYS_PER_REQUEST:
        return [whole]
    # Each part keeps what else the request said (a dry run stays a dry run when it is redriven).
    extra = {k: v for k, v in request.items() if k not in ("bucket", "keys", "failures", "report")}
    if report:
        extra["report"] = report  # an S3 URL: the quarter a part leaves has room for it
    return [_parked_request(bucket, part, _reason_summary(part, reasons), **extra) for part in _parts(failed)]


def _named_refs(request: dict[str, Any]) -> list[ObjectRef]:
    """The objects a rotate request names, read leniently (it was refused as a whole)."""
    refs = []
    for item in request["keys"] if isinstance(request["keys"], list) else []:
        if isinstance(item, str):
            refs.append(ObjectRef(request["bucket"], item))
        elif isinstance(item, dict) and isinstance(item.get("key"), str):
            refs.append(ObjectRef(request["bucket"], item["key"], item.get("versionId")))
    return refs


def _key_item(ref: ObjectRef) -> str | dict[str, str]:
    return {"key": ref.key, "versionId": ref.version_id} if ref.version_id else ref.key


def _parked_request(bucket: str, refs: list[ObjectRef], failures: list[dict[str, Any]], **extra: Any) -> str:
    return json.dumps({"bucket": bucket, "keys": [_key_item(ref) for ref in refs], "failures": failures, **extra})


def _reason_summary(refs: list[ObjectRef], reasons: dict[ObjectRef, str]) -> list[dict[str, Any]]:
    """Each distinct reason with its count and a few keys, as many as ``SUMMARY_BYTES`` of JSON hold; the rest
    are counted in one last entry."""
    by_reason: dict[str, list[str]] = {}
    for ref in refs:
        by_reason.setdefault(reasons[ref][:REASON_CHARS], []).append(ref.key)
    listed = list(by_reason.items())
    summary: list[dict[str, Any]] = []
    size = 100  # the brackets, and room for the last entry counting the rest
    for reason, keys in listed:
        entry = {"reason": reason, "keys": len(keys), "examples": keys[:EXAMPLE_KEYS]}
        size += len(json.dumps(entry)) + 2
        if size > SUMMARY_BYTES:
            break
        summary.append(entry)
    rest = listed[len(summary) :]
    if rest:
        summary.append({"reason": f"{len(rest)} other reasons", "keys": sum(len(keys) for _, keys in rest)})
    return summary


def _parts(refs: list[ObjectRef]) -> Iterator[list[ObjectRef]]:
    """``refs`` in runs of at most ``MAX_KEYS_PER_REQUEST`` whose keys take at most ``PART_KEYS_BYTES`` of JSON."""
    return chunk_by_size(refs, PART_KEYS_BYTES, _key_bytes, most=MAX_KEYS_PER_REQUEST)


def _key_bytes(ref: ObjectRef) -> int:
    return len(json.dumps(_key_item(ref))) + 2  # with its ", " separator
