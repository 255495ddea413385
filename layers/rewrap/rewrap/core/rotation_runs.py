"""A rotation run proves itself: each rotate request of a sweep run (one with a ``runId``) writes a partial
beside those of census runs (``census_runs``), with the census of its objects as the rotation left them
and what the rotation did (``RotationTally``: objects per status, the versions they held before, the
failures and their reasons).

What an object holds after its rotation follows from its result: a rotated object holds its tokens at
the version they were re-wrapped to, a current one what it held, a dry run's what it held. An object
the rotation could not finish (``failed``) is counted by the census's own reader instead, in the same
invocation: what it still holds, malformed tokens included, is then what a census would see. So
merging a complete full run's partials gives the verdict a census of its targets would give, without
reading the objects again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census import DEFAULT_KEY_LABEL, MAX_UNKNOWN_EXAMPLES, Census, CensusKind, ObjectCensus
from rewrap.core.census_runs import RotationTally, write_partial
from rewrap.core.census_taker import CensusTaker
from rewrap.core.config import Settings
from rewrap.core.events import Unit
from rewrap.core.ports import ObjectRef, ObjectStore
from rewrap.core.results import ObjectResult, Status
from rewrap.errors import RewrapError
from rewrap.observability import logger, metrics

# What a census sees of an object from the status the rotation left it in (failed: read again).
_KINDS = {
    Status.ROTATED: CensusKind.TEXT,
    Status.WOULD_ROTATE: CensusKind.TEXT,
    Status.CURRENT: CensusKind.TEXT,
    Status.NO_TOKENS: CensusKind.NO_TOKENS,
    Status.MISSING: CensusKind.MISSING,
    Status.OPAQUE: CensusKind.OPAQUE,
    Status.UNREADABLE: CensusKind.UNREADABLE,
}


def object_census(result: ObjectResult, settings: Settings) -> ObjectCensus:
    """The census of an object as the rotation left it (not for ``failed``: that one is read again)."""
    key_tag = result.key_tag or settings.key_tag or DEFAULT_KEY_LABEL
    kind = _KINDS[result.status]
    if kind is CensusKind.TEXT and not (result.tokens or result.old_versions):
        kind = CensusKind.NO_TOKENS
    versions = versions_left(result, settings.dry_run)
    return ObjectCensus(result.ref, kind, key_tag, versions=versions, reason=result.reason)


def versions_left(result: ObjectResult, dry_run: bool = False) -> dict[int, int]:
    """Version → tokens the object holds after the rotation. Which tokens sat at which version is not in a
    result, only the set of versions: the tokens are counted at the lowest version left."""
    written = result.status is Status.OPAQUE and result.rotated_tokens and not dry_run  # its metadata rotated
    if result.status in (Status.ROTATED, Status.CURRENT) or written:
        left = [result.new_version] if result.new_version is not None else list(result.old_versions)
    elif result.status in (Status.WOULD_ROTATE, Status.OPAQUE):
        left = list(result.old_versions)
    else:
        return {}
    if not left:
        return {}
    counts = dict.fromkeys(left, 0)
    counts[min(left)] = result.tokens
    return counts


def write_run_partials(
    units: Iterable[Unit], by_ref: Mapping[ObjectRef, ObjectResult], settings: Settings, store: ObjectStore, source: str
) -> None:
    """Each rotate request of a sweep run answers with its partial, unless it is to be retried (then its
    retry does). Best effort, as reports are: a partial not written leaves its run incomplete, never SAFE."""
    for unit in units:
        results = [by_ref[ref] for ref in unit.refs]
        if unit.run_id is None or not results or any(result.retryable for result in results):
            continue
        try:
            write_rotation_partial(unit.run_id, unit.refs, results, settings, store, source)
        except RewrapError as exc:
            logger.warning("rotation partial not written", extra={"unit": unit.id, "reason": exc.reason})
            metrics.add_metric(name="ReportWriteFailures", unit=MetricUnit.Count, value=1)


def write_rotation_partial(
    run_id: str,
    refs: Sequence[ObjectRef],
    results: Iterable[ObjectResult],
    settings: Settings,
    store: ObjectStore,
    source: str,
) -> str:
    """The partial of one rotate request of run ``run_id``: ``results`` are its objects', in order."""
    census, tally = Census(), RotationTally()
    failed: list[tuple[ObjectRef, RewrapError | None]] = []
    for result in results:
        tally.statuses[str(result.status)] += 1
        key_tag = result.key_tag or settings.key_tag or DEFAULT_KEY_LABEL
        if result.old_versions:
            tally.found.setdefault(key_tag, Counter()).update(set(result.old_versions))
        if result.status is Status.FAILED:
            failed.append((result.ref, result.error))
            if len(tally.failures) < MAX_UNKNOWN_EXAMPLES:
                tally.failures.append(f"{result.ref}: {result.error.reason if result.error else 'failed'}")
            continue
        census.add(object_census(result, settings))
    taker = CensusTaker(store, default_key_tag=settings.key_tag)
    for ref, error in failed:  # what it still holds, as a census reads it; never in a bucket not allowed
        allowed = settings.bucket_allowed(ref.bucket)
        census.add(taker.inspect_ref(ref) if allowed else ObjectCensus(ref, CensusKind.FAILED, error=error))
    return write_partial(settings, store, run_id, refs, census, source, {"mode": "rotate", "rotation": tally.to_dict()})
