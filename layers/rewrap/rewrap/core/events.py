"""Event kinds → work units. One handler accepts every route; this module recognises which one.

A *unit* is what the caller acknowledges or retries as a whole: an S3 record, an SQS message, a
Batch Operations task, a direct request. Its object references are rotated together with those
of every other unit in the invocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from rewrap.core.config import MAX_KEYS_PER_REQUEST
from rewrap.core.ports import ObjectRef
from rewrap.errors import UnsupportedEventError


class Trigger(StrEnum):
    S3 = "s3-notification"
    SNS = "sns"
    SQS = "sqs"
    EVENTBRIDGE = "eventbridge"
    BATCH_OPERATIONS = "s3-batch-operations"
    ROTATE_REQUEST = "rotate-request"


class RequestKind(StrEnum):
    """What a unit asks (a request's ``mode``): rotate its objects, or count them for a census, never writing."""

    ROTATE = "rotate"
    CENSUS = "census"


@dataclass
class Unit:
    id: str
    refs: list[ObjectRef] = field(default_factory=list)
    error: UnsupportedEventError | None = None  # the unit itself could not be understood
    note: str = ""  # e.g. "s3:TestEvent", acknowledged without work
    newest_versions: dict[str, int] = field(default_factory=dict)  # hints from the sweep's probe
    request: RequestKind = RequestKind.ROTATE  # which route answers it (``dispatch``)
    run_id: str | None = None  # the run the request belongs to, which its partial goes to (a census's always)


@dataclass
class Invocation:
    kind: Trigger
    units: list[Unit]
    dry_run: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def refs(self) -> list[ObjectRef]:
        return [ref for unit in self.units for ref in unit.refs]

    @property
    def newest_versions(self) -> dict[str, int]:
        hints: dict[str, int] = {}
        for unit in self.units:
            for key_tag, version in unit.newest_versions.items():
                hints[key_tag] = max(version, hints.get(key_tag, 0))
        return hints


def parse(event: Any) -> Invocation:
    """Recognise the route of ``event``; raises UnsupportedEventError naming what was received."""
    if not isinstance(event, dict):
        raise UnsupportedEventError(f"expected a JSON object event, received {type(event).__name__}")
    if "invocationSchemaVersion" in event and "tasks" in event:
        return Invocation(Trigger.BATCH_OPERATIONS, _batch_operation_units(event), _job_dry_run(event), raw=event)
    records = event.get("Records")
    if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
        sources = {r.get("eventSource") or r.get("EventSource") for r in records}
        if sources == {"aws:sqs"}:
            return Invocation(Trigger.SQS, [_sqs_unit(r) for r in records], raw=event)
        if sources == {"aws:s3"}:
            units = [Unit(str(i), refs=_s3_record_refs(r)) for i, r in enumerate(records)]
            return Invocation(Trigger.S3, units, raw=event)
        if sources == {"aws:sns"}:  # a topic the function subscribes to directly
            return Invocation(Trigger.SNS, [_sns_unit(i, r) for i, r in enumerate(records)], raw=event)
    if event.get("source") == "aws.s3" and "detail" in event:
        return Invocation(Trigger.EVENTBRIDGE, [Unit(str(event.get("id", "0")), _eventbridge_refs(event))], raw=event)
    if "bucket" in event and "keys" in event:
        dry_run = event.get("dryRun")
        if dry_run is not None and not isinstance(dry_run, bool):
            raise UnsupportedEventError("rotate request: dryRun must be true or false")
        unit = Unit("request", refs=_request_refs(event), newest_versions=_newest_versions(event))
        unit.request, unit.run_id = request_kind(event)
        return Invocation(Trigger.ROTATE_REQUEST, [unit], dry_run, raw=event)
    raise UnsupportedEventError(f"unrecognised event; top-level fields: {sorted(map(str, event))[:12]}")


# --- SQS message bodies --------------------------------------------------------------------------
def _sqs_unit(record: dict[str, Any]) -> Unit:
    unit = Unit(str(record.get("messageId", "")))
    try:
        body = json.loads(record.get("body") or "")
    except (TypeError, ValueError):
        unit.error = UnsupportedEventError("SQS message body is not JSON")
        return unit
    try:
        unit.refs, unit.note = message_refs(body)
        unit.newest_versions = _newest_versions(body)
        unit.request, unit.run_id = request_kind(body)
    except UnsupportedEventError as error:
        unit.error = error
    return unit


def _sns_unit(index: int, record: dict[str, Any]) -> Unit:
    raw = record.get("Sns")
    sns: dict[str, Any] = raw if isinstance(raw, dict) else {}
    unit = Unit(str(sns.get("MessageId") or index))
    try:
        unit.refs, unit.note = message_refs({"Type": "Notification", "Message": sns.get("Message")})
    except UnsupportedEventError as error:
        unit.error = error
    return unit


def message_refs(body: Any) -> tuple[list[ObjectRef], str]:
    """Object references in one message body: S3 notification, SNS-wrapped, EventBridge, request."""
    if not isinstance(body, dict):
        raise UnsupportedEventError(f"message body is a JSON {type(body).__name__}, not an object")
    if body.get("Event") == "s3:TestEvent":
        return [], "s3:TestEvent"
    if body.get("Type") == "Notification":
        if not isinstance(body.get("Message"), str):
            raise UnsupportedEventError("SNS notification has no Message")
        try:
            inner = json.loads(body["Message"])
        except ValueError as exc:
            raise UnsupportedEventError("SNS notification Message is not JSON") from exc
        return message_refs(inner)
    if isinstance(body.get("Records"), list):
        refs: list[ObjectRef] = []
        for record in body["Records"]:
            if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
                raise UnsupportedEventError("message holds a record that is not an S3 notification")
            refs.extend(_s3_record_refs(record))
        return refs, ""
    if body.get("source") == "aws.s3" and "detail" in body:
        return _eventbridge_refs(body), ""
    if "bucket" in body and "keys" in body:
        if body.get("dryRun", False) is not False:
            # A batch of messages is rotated as one invocation, so one message cannot be a dry run:
            # refuse it rather than write what was asked only to be reported.
            raise UnsupportedEventError("rotate request: dryRun is honoured only when rotate is invoked directly")
        return _request_refs(body), ""
    raise UnsupportedEventError(f"unrecognised message body; fields: {sorted(map(str, body))[:12]}")


# --- shapes -------------------------------------------------------------------------------------
def _s3_record_refs(record: dict[str, Any]) -> list[ObjectRef]:
    """S3 notification record → the object, if it was created (removals need no rotation).

    Keys arrive URL-encoded form-style (space as ``+``). The version id is not kept: the current
    object is what gets rotated, and a newer version brings its own event.
    """
    if not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return []
    try:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError) as exc:
        raise UnsupportedEventError("S3 record lacks s3.bucket.name or s3.object.key") from exc
    return [ObjectRef(_bucket(bucket), _text(key, "key"))]


def _eventbridge_refs(event: dict[str, Any]) -> list[ObjectRef]:
    """The object, with its key decoded as S3 notifications encode keys (AWS does not document the
    encoding of ``detail.object.key``; LocalStack, modelled on AWS, percent-encodes it). When the
    decoded key differs, the ref keeps the key as sent too: the engine reads it if only that one exists."""
    if event.get("detail-type") != "Object Created":
        return []
    try:
        bucket, key = event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    except (KeyError, TypeError) as exc:
        raise UnsupportedEventError("EventBridge S3 event lacks detail.bucket.name or detail.object.key") from exc
    bucket, sent = _bucket(bucket), _text(key, "key")
    decoded = _text(unquote_plus(sent), "key")
    return [ObjectRef(bucket, decoded, as_sent=sent if sent != decoded else None)]


def _request_refs(request: dict[str, Any]) -> list[ObjectRef]:
    bucket, keys = request.get("bucket"), request.get("keys")
    if not isinstance(keys, list) or not keys:
        raise UnsupportedEventError("rotate request: keys must be a non-empty list")
    if len(keys) > MAX_KEYS_PER_REQUEST:
        raise UnsupportedEventError(f"rotate request: at most {MAX_KEYS_PER_REQUEST} keys")
    refs = []
    for item in keys:
        if isinstance(item, dict):
            refs.append(ObjectRef(_bucket(bucket), _text(item.get("key"), "key"), item.get("versionId")))
        else:
            refs.append(ObjectRef(_bucket(bucket), _text(item, "key")))
    return refs


def request_kind(body: Any) -> tuple[RequestKind, str | None]:
    """A request's kind (its ``mode``) and the run it belongs to: a census request always names its run, a rotate
    request when a sweep run sent it."""
    request = body if isinstance(body, dict) else {}
    mode = request.get("mode", RequestKind.ROTATE)
    if mode not in tuple(RequestKind):
        raise UnsupportedEventError(f"request mode must be 'rotate' or 'census', not {str(mode)[:40]!r}")
    kind = RequestKind(mode)
    if kind is RequestKind.ROTATE and request.get("runId") is None:
        return kind, None
    return kind, _run_id(request.get("runId"), f"{kind} request")


def _run_id(run_id: Any, what: str) -> str:
    if not isinstance(run_id, str) or not run_id or len(run_id) > 128 or "/" in run_id:
        raise UnsupportedEventError(f"{what}: runId must be a non-empty string without '/'")
    return run_id


def _newest_versions(body: Any) -> dict[str, int]:
    """``newestVersions`` of a rotate request: the newest key versions the sweep saw when it ran."""
    hints = body.get("newestVersions") if isinstance(body, dict) else None
    if not isinstance(hints, dict):
        return {}
    return {str(tag): v for tag, v in hints.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def _job_dry_run(event: dict[str, Any]) -> bool | None:
    """Schema 2.0 jobs may pass ``userArguments: {"dryRun": "true"}``."""
    arguments = (event.get("job") or {}).get("userArguments") or {}
    value = str(arguments.get("dryRun", "")).strip().lower() if isinstance(arguments, dict) else ""
    if value in ("", "false"):
        return None if not value else False
    if value == "true":
        return True
    raise UnsupportedEventError("S3 Batch Operations userArguments.dryRun must be true or false")


def _batch_operation_units(event: dict[str, Any]) -> list[Unit]:
    if event.get("invocationSchemaVersion") not in ("1.0", "2.0"):
        raise UnsupportedEventError(f"S3 Batch Operations schema {event.get('invocationSchemaVersion')!r}")
    tasks = event.get("tasks")
    if not isinstance(tasks, list):
        raise UnsupportedEventError("S3 Batch Operations event has no task list")
    arguments = (event.get("job") or {}).get("userArguments") or {}
    job: tuple[RequestKind, str | None] = (RequestKind.ROTATE, None)
    if isinstance(arguments, dict) and arguments.get("mode") not in (None, "", "rotate"):
        job_id = str(arguments.get("runId") or (event.get("job") or {}).get("id") or event.get("invocationId", ""))
        job = request_kind({"mode": arguments.get("mode"), "runId": job_id})
    units = []
    for task in tasks:
        unit = Unit(str(task.get("taskId", "")) if isinstance(task, dict) else "")
        try:
            bucket = task.get("s3Bucket") or task.get("s3BucketArn")
            unit.refs = [
                ObjectRef(_bucket(bucket), unquote_plus(_text(task.get("s3Key"), "key")), task.get("s3VersionId"))
            ]
        except (UnsupportedEventError, AttributeError) as error:
            unit.error = error if isinstance(error, UnsupportedEventError) else UnsupportedEventError("malformed task")
        if unit.error is None:
            unit.request, unit.run_id = job
        units.append(unit)
    return units


def _bucket(value: Any) -> str:
    """A bucket name, or the name out of a bucket ARN (the text after its last ``:``)."""
    name = _text(value, "bucket")
    return _text(name.rpartition(":")[2], "bucket") if name.startswith("arn:") else name


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise UnsupportedEventError(f"{what} must be a non-empty string")
    if len(value.encode()) > 1024:
        raise UnsupportedEventError(f"{what} is longer than S3's 1024-byte limit")
    return value
