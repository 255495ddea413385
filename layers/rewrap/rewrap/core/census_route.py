"""The census route: census requests (``"mode": "census"``: a census run's messages, a census S3 Batch
Operations job, a direct request) are scanned with the census's scanner and never written. Each request
writes its partial to its run (``census_runs``) and is answered in the shape its trigger expects: SQS and
Batch Operations as ``trigger_replies`` says, a direct request with its objects' census."""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census import CensusKind
from rewrap.core.census_runs import CensusAnswer, answer, result_string
from rewrap.core.config import Settings
from rewrap.core.events import Invocation, Trigger, Unit
from rewrap.core.ports import DeadLetterSink, ObjectStore
from rewrap.core.trigger_replies import batch_operations_reply, failed_task, sqs_reply, task_result
from rewrap.errors import ConfigError
from rewrap.observability import logger, metrics


class CensusServices(Protocol):
    """What the census route needs; the container's ``Runtime`` is one."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> ObjectStore: ...
    @property
    def dead_letters(self) -> DeadLetterSink | None: ...


def census_invocation(invocation: Invocation, units: list[Unit], runtime: CensusServices) -> dict[str, Any]:
    """Answer the census requests ``units`` of ``invocation``."""
    settings = runtime.settings
    if invocation.kind is Trigger.SQS and not settings.report_prefix:
        raise ConfigError("census requests from the queue need REWRAP_REPORT_PREFIX to write their partials to")
    route = str(invocation.kind)
    answers = [(unit, answer(str(unit.run_id), unit.refs, settings, runtime.store, route)) for unit in units]
    counted = sum(len(a.items) for _, a in answers)
    if counted:
        metrics.add_metric(name="ObjectsCensused", unit=MetricUnit.Count, value=counted)
    for unit, reply in answers:
        if reply.error is not None:
            logger.warning("census request not answered", extra={"unit": unit.id, "reason": reply.error.reason})
    logger.info("census done", extra={"route": route, "objects": counted, "requests": len(answers)})
    if invocation.kind is Trigger.SQS:
        return sqs_reply(invocation, [(unit, reply.error) for unit, reply in answers], runtime.dead_letters)
    if invocation.kind is Trigger.BATCH_OPERATIONS:
        return batch_operations_reply(invocation, [_task_result(unit, reply) for unit, reply in answers])
    return _summary(answers[0][1])


def _task_result(unit: Unit, reply: CensusAnswer) -> dict[str, Any]:
    if reply.error is not None:
        return failed_task(unit, reply.error)
    item = reply.items[0]
    seen = item.kind not in (CensusKind.MISSING, CensusKind.UNREADABLE, CensusKind.FAILED)
    return task_result(unit, "Succeeded" if seen else "PermanentFailure", result_string(item))


def _summary(reply: CensusAnswer) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "census", "runId": reply.run_id, "partial": reply.partial}
    if reply.error is not None:
        out["error"] = {"class": type(reply.error).__name__, "reason": reply.error.reason}
        out["retryable"] = int(reply.error.retryable)
        out["permanent"] = int(not reply.error.retryable)
        return out
    summary = reply.census.to_dict()
    summary.pop("verdict", None)  # a request's objects are a sample; the verdict is the merged run's
    return {**out, "census": summary, "objects": [item.to_dict() for item in reply.items]}
