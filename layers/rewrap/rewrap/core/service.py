"""The rotate route: rotate requests and S3 object events → engine → the response each trigger expects.

- S3 notifications, SNS and EventBridge (direct, asynchronous invocations): a retryable failure
  raises, so Lambda retries the event; permanent failures are logged and counted.
- SQS and S3 Batch Operations: as ``trigger_replies`` says (only retryable messages are retried, a
  permanent failure is parked with its reason; one result per task).
- Objects S3 cannot serve (archived, SSE-C) are ``unreadable``: reported, never failed or parked.
- Direct rotate requests: a per-object summary.
Census requests take their own route (``census_route``); ``dispatch`` sends each unit to its route.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.config import Settings
from rewrap.core.engine import UNSEEN, Engine, ObjectResult, Status
from rewrap.core.events import Invocation, Trigger, Unit
from rewrap.core.ports import CountedRewrapper, DeadLetterSink, ObjectRef, ObjectStore
from rewrap.core.reports import publish_report
from rewrap.core.rotation_runs import write_run_partials
from rewrap.core.trigger_replies import batch_operations_reply, failed_task, sqs_reply, task_result
from rewrap.deadline import Deadline
from rewrap.errors import KmsVersionDisabledError, RetryableError, RewrapError, UnsupportedEventError
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


def rotate_invocation(invocation: Invocation, context: Any, runtime: RotateServices) -> dict[str, Any]:
    """Rotate the objects of every unit of ``invocation`` in one engine pass, and answer its trigger."""
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


def _unit_error(unit: Unit, by_ref: dict[ObjectRef, ObjectResult]) -> RewrapError | None:
    """The unit's deciding error: a retryable one wins, so the unit is retried rather than parked."""
    if unit.error is not None:
        return unit.error
    errors = [by_ref[ref].error for ref in unit.refs if by_ref[ref].error is not None]
    retryable = [e for e in errors if e is not None and e.retryable]
    return (retryable or errors or [None])[0]


def _sqs_response(
    invocation: Invocation, by_ref: dict[ObjectRef, ObjectResult], runtime: RotateServices, report: str | None
) -> dict[str, Any]:
    outcomes = [(unit, _unit_error(unit, by_ref)) for unit in invocation.units]
    return sqs_reply(invocation, outcomes, runtime.dead_letters, by_ref, report)


def _batch_operations_response(invocation: Invocation, by_ref: dict[ObjectRef, ObjectResult]) -> dict[str, Any]:
    out = []
    for unit in invocation.units:
        error = _unit_error(unit, by_ref)
        if error is not None:
            out.append(failed_task(unit, error))
            continue
        result = by_ref[unit.refs[0]]
        # an object not looked at is no failure to retry, nor done: the job's failure report lists it
        out.append(task_result(unit, "PermanentFailure" if result.status in UNSEEN else "Succeeded", _describe(result)))
    return batch_operations_reply(invocation, out)


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
