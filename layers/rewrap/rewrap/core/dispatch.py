"""The rotate function's event → its units, each answered by the route of its request kind: census requests
by the census route (``census_route``), every other unit by the rotate route (``service``). An invocation that
holds both (an SQS batch) gets one answer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rewrap.core.census_route import census_invocation
from rewrap.core.events import RequestKind, Trigger, parse
from rewrap.core.service import RotateServices, rotate_invocation
from rewrap.errors import UnsupportedEventError
from rewrap.observability import logger


def rotate_event(event: Any, context: Any, runtime: RotateServices) -> dict[str, Any]:
    try:
        invocation = parse(event)
    except UnsupportedEventError as error:
        logger.error("rejected event", extra={"reason": error.reason})
        raise
    census = [unit for unit in invocation.units if unit.request is RequestKind.CENSUS]
    if not census:
        return rotate_invocation(invocation, context, runtime)
    reply = census_invocation(invocation, census, runtime)
    others = [unit for unit in invocation.units if unit.request is not RequestKind.CENSUS]
    if not others:
        return reply
    rest = rotate_invocation(replace(invocation, units=others), context, runtime)
    if invocation.kind is Trigger.SQS:
        return {"batchItemFailures": reply["batchItemFailures"] + rest["batchItemFailures"]}
    return {**reply, "results": reply["results"] + rest["results"]}  # a Batch Operations invocation
