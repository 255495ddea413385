"""The rotate route: event → engine → the response each trigger expects.

- S3 notifications, SNS and EventBridge (direct, asynchronous invocations): a retryable failure
  raises, so Lambda retries the event; permanent failures are logged and counted.
- SQS: only messages with a retryable failure are returned in ``batchItemFailures``. A message
  that failed permanently is forwarded to the dead-letter queue with its reason (when
  REWRAP_DEAD_LETTER_QUEUE_URL is set) and acknowledged, so it is neither retried nor lost; of a
  rotate request only the keys that failed are parked (``rewrap.core.parking``). A message the
  dead-letter queue refuses stays on its queue, logged and counted.
- Objects S3 cannot serve (archived, SSE-C) are ``unreadable``: reported, never failed or parked.
- S3 Batch Operations: one result per task (Succeeded / TemporaryFailure / PermanentFailure).
- Direct rotate requests: a per-object summary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census import CensusKind
from rewrap.core.census_runs import CensusAnswer, answer, result_string
from rewrap.core.config import Settings
from rewrap.core.engine import UNSEEN, Engine, ObjectResult, Status
from rewrap.core.events import Invocation, Trigger, Unit, parse
from rewrap.core.parking import park
from rewrap.core.ports import CountedRewrapper, DeadLetterSink, ObjectStore
from rewrap.core.reports import publish_report
from rewrap.core.rotation_runs import write_run_partials
from rewrap.deadline import Deadline
from rewrap.errors import ConfigError, KmsVersionDisabledError, RetryableError, RewrapError, UnsupportedEventError
from rewrap.observability import logger, metrics

_METRIC_NAMES = {
    Status.ROTATED: "ObjectsRotated",
    Status.WOULD_ROTATE: "ObjectsWouldRotate",
    Status.CURRENT: "ObjectsCurrent",
    Status.NO_TOKENS: "ObjectsWithoutTokens",
    Status.MISSING: "ObjectsMissing",
    Status.OPAQUE: "ObjectsOpaque",
    Status.UNREADABLE: "ObjectsUnreadable",
}
BATCH_RESULT_STRING_LIMIT = 900


class RotateServices(Protocol):
    """What the rotate route needs; the container's ``Runtime`` is one."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def store(self) -> ObjectStore: ...
    @property
    def kms(self) -> CountedRewrapper: ...
    @property
    def dead_letters(self) -> DeadLetterSink | None: ...


def rotate_event(event: Any, context: Any, runtime: RotateServices) -> dict[str, Any]:
    try:
        invocation = parse(event)
    except UnsupportedEventError as error:
        logger.error("rejected event", extra={"reason": error.reason})
        raise
    census_units = [unit for unit in invocation.units if unit.census_run is not None]
    if not census_units:
        return _rotate(invocation, context, runtime)
    reply = census_event(invocation, census_units, runtime)
    others = [unit for unit in invocation.units if unit.census_run is None]
    if not others:
        return reply
    rest = _rotate(replace(invocation, units=others), context, runtime)
    if invocation.kind is Trigger.SQS:
        return {"batchItemFailures": reply["batchItemFailures"] + rest["batchItemFailures"]}
    return {**reply, "results": reply["results"] + rest["results"]}  # a Batch Operations invocation


def _rotate(invocation: Invocation, context: Any, runtime: RotateServices) -> dict[str, Any]:
    for key_tag, version in invocation.newest_versions.items():
        runtime.engine.versions.observe(key_tag, version)
    kms_before = runtime.kms.stats.snapshot()
    deadline = Deadline.from_lambda_context(context)
    results = runtime.engine.rotate(invocation.refs, deadline=deadline, dry_run=invocation.dry_run)
    by_ref = dict(zip(invocation.refs, results, strict=True))
    _observe(invocation, results, runtime, kms_before)
    report = None
    if runtime.settings.report_prefix:
        records = [{**r.to_dict(), "route": str(invocation.kind)} for r in by_ref.values()]
        report = publish_report(runtime.settings.report_prefix, runtime.store, context, "rotate", records)
        write_run_partials(invocation.units, by_ref, runtime.settings, runtime.store, str(invocation.kind))
    if invocation.kind is Trigger.SQS:
        return _sqs_response(invocation, by_ref, runtime, report)
    if invocation.kind is Trigger.BATCH_OPERATIONS:
        return _batch_operations_response(invocation, by_ref)
    summary = summarize(results)
    if invocation.kind in (Trigger.S3, Trigger.SNS, Trigger.EVENTBRIDGE):
        _fail_asynchronous_invocation(invocation, summary)
    if invocation.kind is Trigger.ROTATE_REQUEST:
        summary["objects"] = [r.to_dict() for r in results]
    return summary


def _fail_asynchronous_invocation(invocation: Invocation, summary: dict[str, Any]) -> None:
    """A direct S3, SNS or EventBridge invocation is asynchronous: the only way to keep what it could not do is
    to fail it, so Lambda retries it and then hands it to the function's failure destination, as the SQS route's
    dead-letter queue keeps a message. A retryable object failure is retried; a record that is not an S3 event
    (a foreign SNS message, say) is refused with its reason rather than answered with nothing done."""
    if summary["retryable"]:
        raise RetryableError(f"{summary['retryable']} object(s) failed with a retryable error; retrying the event")
    refused = [unit for unit in invocation.units if unit.error is not None]
    if refused:
        reasons = "; ".join(f"{unit.id}: {unit.error.reason}" for unit in refused if unit.error is not None)
        logger.error(
            "unsupported records in an asynchronous event", extra={"route": str(invocation.kind), "reasons": reasons}
        )
        raise UnsupportedEventError(f"{len(refused)} record(s) are not S3 events ({reasons[:300]})")


def summarize(results: list[ObjectResult]) -> dict[str, Any]:
    counts = Counter(str(r.status) for r in results)
    return {
        "total": len(results),
        **{str(status): counts.get(str(status), 0) for status in Status},
        "retryable": sum(1 for r in results if r.retryable),
        "permanent": sum(1 for r in results if r.status is Status.FAILED and not r.retryable),
    }


def _unit_error(unit: Unit, by_ref: dict[Any, ObjectResult]) -> RewrapError | None:
    """The unit's deciding error: a retryable one wins, so the unit is retried rather than parked."""
    if unit.error is not None:
        return unit.error
    errors = [by_ref[ref].error for ref in unit.refs if by_ref[ref].error is not None]
    retryable = [e for e in errors if e is not None and e.retryable]
    return (retryable or errors or [None])[0]


def _sqs_response(
    invocation: Invocation, by_ref: dict[Any, ObjectResult], runtime: RotateServices, report: str | None
) -> dict[str, Any]:
    outcomes = [(unit, _unit_error(unit, by_ref)) for unit in invocation.units]
    return _sqs_failures(invocation, outcomes, runtime, by_ref, report)


def _sqs_failures(
    invocation: Invocation,
    outcomes: list[tuple[Unit, RewrapError | None]],
    runtime: RotateServices,
    by_ref: dict[Any, ObjectResult] | None = None,
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
        if runtime.dead_letters is not None:
            body = str(records.get(unit.id, {}).get("body", ""))
            if not park(runtime.dead_letters, unit, error, body, by_ref, report):
                failures.append({"itemIdentifier": unit.id})
    return {"batchItemFailures": failures}


# --- census requests: scanned with the census's scanner, never written ------------------------------
def census_event(invocation: Invocation, units: list[Unit], runtime: RotateServices) -> dict[str, Any]:
    settings = runtime.settings
    if invocation.kind is Trigger.SQS and not settings.report_prefix:
        raise ConfigError("census requests from the queue need REWRAP_REPORT_PREFIX to write their partials to")
    route = str(invocation.kind)
    answers = [(unit, answer(str(unit.census_run), unit.refs, settings, runtime.store, route)) for unit in units]
    counted = sum(len(a.items) for _, a in answers)
    if counted:
        metrics.add_metric(name="ObjectsCensused", unit=MetricUnit.Count, value=counted)
    for unit, reply in answers:
        if reply.error is not None:
            logger.warning("census request not answered", extra={"unit": unit.id, "reason": reply.error.reason})
    logger.info("census done", extra={"route": route, "objects": counted, "requests": len(answers)})
    if invocation.kind is Trigger.SQS:
        return _sqs_failures(invocation, [(unit, reply.error) for unit, reply in answers], runtime)
    if invocation.kind is Trigger.BATCH_OPERATIONS:
        return _batch_operations_envelope(invocation, [_census_task_result(unit, reply) for unit, reply in answers])
    return _census_summary(answers[0][1])


def _census_task_result(unit: Unit, reply: CensusAnswer) -> dict[str, Any]:
    if reply.error is not None:
        code = "TemporaryFailure" if reply.error.retryable else "PermanentFailure"
        text = reply.error.reason
    else:
        item = reply.items[0]
        seen = item.kind not in (CensusKind.MISSING, CensusKind.UNREADABLE, CensusKind.FAILED)
        code, text = ("Succeeded" if seen else "PermanentFailure"), result_string(item)
    return {"taskId": unit.id, "resultCode": code, "resultString": text[:BATCH_RESULT_STRING_LIMIT]}


def _census_summary(reply: CensusAnswer) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "census", "runId": reply.run_id, "partial": reply.partial}
    if reply.error is not None:
        out["error"] = {"class": type(reply.error).__name__, "reason": reply.error.reason}
        out["retryable"] = int(reply.error.retryable)
        out["permanent"] = int(not reply.error.retryable)
        return out
    summary = reply.census.to_dict()
    summary.pop("verdict", None)  # a request's objects are a sample; the verdict is the merged run's
    return {**out, "census": summary, "objects": [item.to_dict() for item in reply.items]}


def _batch_operations_envelope(invocation: Invocation, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "invocationSchemaVersion": invocation.raw.get("invocationSchemaVersion"),
        # A task we failed to answer is retried rather than silently counted as done.
        "treatMissingKeysAs": "TemporaryFailure",
        "invocationId": invocation.raw.get("invocationId"),
        "results": results,
    }


def _batch_operations_response(invocation: Invocation, by_ref: dict[Any, ObjectResult]) -> dict[str, Any]:
    out = []
    for unit in invocation.units:
        error = _unit_error(unit, by_ref)
        if error is None:
            result = by_ref[unit.refs[0]]
            code, text = "Succeeded", _describe(result)
            if result.status in UNSEEN:  # not a failure to retry, nor done: the job's failure report lists it
                code, text = "PermanentFailure", _describe(result)
        else:
            code = "TemporaryFailure" if error.retryable else "PermanentFailure"
            text = error.reason
        out.append({"taskId": unit.id, "resultCode": code, "resultString": text[:BATCH_RESULT_STRING_LIMIT]})
    return _batch_operations_envelope(invocation, out)


def _describe(result: ObjectResult) -> str:
    if result.status in (Status.ROTATED, Status.WOULD_ROTATE):
        versions = ",".join(f"v{v}" for v in result.old_versions)
        return f"{result.status}: {result.rotated_tokens}/{result.tokens} tokens {versions} -> v{result.new_version}"
    if result.status is Status.CURRENT:
        return f"current: {result.tokens} tokens at v{result.new_version or max(result.old_versions or (0,))}"
    if result.status is Status.UNREADABLE:
        return f"unreadable: {result.reason}"
    if result.status is Status.OPAQUE:
        return result.reason or "opaque"
    return str(result.status)


def _observe(
    invocation: Invocation, results: list[ObjectResult], runtime: RotateServices, kms_before: dict[str, int]
) -> None:
    for status, name in _METRIC_NAMES.items():
        count = sum(1 for r in results if r.status is status)
        if count:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    failed = [r for r in results if r.status is Status.FAILED]
    for cls, items in (
        ("Retryable", [r for r in failed if r.retryable]),
        ("Permanent", [r for r in failed if not r.retryable]),
    ):
        if items:
            metrics.add_metric(name=f"ObjectsFailed{cls}", unit=MetricUnit.Count, value=len(items))
    # a token on a disabled version: a retired version something still needs (the template alarms on it)
    on_disabled = sum(1 for r in failed if r.error is not None and r.error.code == KmsVersionDisabledError.code)
    if on_disabled:
        metrics.add_metric(name="ObjectsOnDisabledVersion", unit=MetricUnit.Count, value=on_disabled)
    kms_after = runtime.kms.stats.snapshot()
    for name, key in (("KmsRequests", "requests"), ("KmsRetries", "retries")):
        if kms_after[key] - kms_before[key]:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=kms_after[key] - kms_before[key])
    for result in results:
        if result.status is Status.FAILED:
            logger.warning("object not rotated", extra=result.to_dict())
        elif result.status in UNSEEN:
            logger.warning("object not looked at", extra=result.to_dict())
        elif result.status in (Status.ROTATED, Status.WOULD_ROTATE):
            logger.info(
                "object rotated" if result.status is Status.ROTATED else "object would rotate", extra=result.to_dict()
            )
        else:
            logger.debug("object unchanged", extra=result.to_dict())
    logger.info("invocation done", extra={"route": str(invocation.kind), **summarize(results)})
