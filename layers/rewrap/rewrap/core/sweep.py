"""The sweep: list the configured targets and enqueue rotate requests for the rotate fleet.

A listing longer than one invocation can finish hands over to a follow-up invocation at a page
boundary: the pages before it were fully enqueued, the pages after it were not touched, so no key
is skipped or sent twice by the hand-over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census_runs import partial_name, run_folder, write_listing
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import KeyVersions, Listed, ObjectStore, RequestQueue
from rewrap.core.reports import publish_report
from rewrap.deadline import Deadline
from rewrap.errors import ConfigError, RewrapError, UnsupportedEventError
from rewrap.observability import logger, metrics

# Stop listing and hand over when less than this much time is left.
HANDOVER_RESERVE_SECONDS = 20.0


@dataclass
class SweepPosition:
    target: int = 0
    continuation_token: str | None = None


@dataclass
class SweepReport:
    listed: int = 0
    archived: int = 0  # GLACIER / DEEP_ARCHIVE, not restored: skipped (S3 cannot serve their bodies)
    enqueued: int = 0
    messages: int = 0
    batches: int = 0
    pages: int = 0
    resume_at: SweepPosition | None = None  # set when a follow-up invocation continues the listing
    partials: list[str] = field(default_factory=list)  # census mode: the partial each message answers with

    def to_dict(self) -> dict[str, Any]:
        fields = ("listed", "archived", "enqueued", "messages", "batches", "pages")
        return {**{name: getattr(self, name) for name in fields}, "continued": self.resume_at is not None}


class SweepServices(Protocol):
    """What the sweep needs; the container's ``Runtime`` is one."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> ObjectStore: ...
    @property
    def rotate_queue(self) -> RequestQueue | None: ...
    @property
    def kms(self) -> KeyVersions: ...

    def continue_async(self, context: Any, payload: dict[str, Any]) -> None:
        """Invoke this function again, asynchronously, with ``payload`` (the hand-over)."""


def sweep_event(event: Any, context: Any, services: SweepServices) -> dict[str, Any]:
    settings, store, queue, kms = services.settings, services.store, services.rotate_queue, services.kms
    if queue is None:
        raise ConfigError("REWRAP_QUEUE_URL is not set; the sweep has nowhere to send work")
    targets, position = _plan(event, settings)
    census = _census_state(event, settings)
    deadline = Deadline.from_lambda_context(context, 0.0)
    if census is None:
        newest = probe_newest_versions(kms, [settings.key_tag] if settings.key_tag else [], deadline)
        report = run_sweep(targets, position, settings, store, queue, deadline, newest)
    else:  # census requests need no KMS call; the listing records the newest version, for the verdict
        newest = _newest_if_known(kms, settings, deadline)
        report = run_sweep(targets, position, settings, store, queue, deadline, census_run=census["runId"])
    if report.resume_at is not None:
        state: dict[str, Any] = {
            "targets": [_target_text(t) for t in targets],
            "target": report.resume_at.target,
            "continuationToken": report.resume_at.continuation_token,
        }
        if census is not None:
            state.update(mode="census", runId=census["runId"], sequence=census["sequence"] + 1)
        services.continue_async(context, {"rewrapSweep": state})
        metrics.add_metric(name="SweepContinuations", unit=MetricUnit.Count, value=1)
    for name, value in (
        ("ObjectsListed", report.listed),
        ("ObjectsArchivedSkipped", report.archived),
        ("KeysEnqueued", report.enqueued),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="SweepMessagesSent", unit=MetricUnit.Count, value=report.messages)
    logger.info("sweep done", extra=report.to_dict())
    record = {**report.to_dict(), "targets": [_target_text(t) for t in targets], "newestVersions": newest}
    publish_report(settings.report_prefix, store, context, "sweep", [record])
    if census is not None:
        versioning = {t.bucket: store.bucket_versioning(t.bucket) for t in targets}
        listing = {**report.to_dict(), "targets": record["targets"], "versioning": versioning, "newestVersions": newest}
        write_listing(settings, store, census["runId"], census["sequence"], listing, report.partials)
        return {**report.to_dict(), "mode": "census", "runId": census["runId"]}
    return report.to_dict()


def _census_state(event: Any, settings: Settings) -> dict[str, Any] | None:
    """Census mode's run id and the invocation's place in the run, or None for a rotation sweep."""
    state = event.get("rewrapSweep", event) if isinstance(event, dict) else {}
    if not isinstance(state, dict) or state.get("mode", "rotate") == "rotate":
        return None
    if state.get("mode") != "census":
        raise UnsupportedEventError(f"sweep: mode must be 'rotate' or 'census', not {str(state.get('mode'))[:40]!r}")
    run_folder(settings.report_prefix, "-")  # a census run needs somewhere to write: refuse now, not per message
    run_id = state.get("runId") or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    if not isinstance(run_id, str) or "/" in run_id or len(run_id) > 128:
        raise UnsupportedEventError("sweep: runId must be a string without '/'")
    return {"runId": run_id, "sequence": int(state.get("sequence", 0))}


def run_sweep(
    targets: list[SweepTarget],
    position: SweepPosition,
    settings: Settings,
    store: ObjectStore,
    queue: RequestQueue,
    deadline: Deadline,
    newest_versions: dict[str, int] | None = None,
    census_run: str | None = None,
) -> SweepReport:
    """Enqueue rotate requests (with ``census_run``: census requests of that run) for the targets.
    A rotation skips archived objects; a census asks about them too, so they count as unreadable."""
    extra: dict[str, Any] | None = {"newestVersions": newest_versions} if newest_versions else None
    if census_run is not None:
        extra = {"mode": "census", "runId": census_run}
    report = SweepReport()
    token = position.continuation_token
    for index in range(position.target, len(targets)):
        target = targets[index]
        while True:
            items, next_token = store.list_page(target.bucket, target.prefix, token, settings.sweep_page_size)
            report.pages += 1
            report.listed += len(items)
            report.archived += sum(1 for item in items if item.archived)
            skip_archived = census_run is None
            keys = [item.key for item in items if not (skip_archived and item.archived) and _selected(item, settings)]
            if keys:
                chunks: list[list[str]] = []
                messages, calls = queue.send_requests(
                    target.bucket, keys, settings.sweep_keys_per_message, extra, chunks
                )
                if census_run is not None:
                    report.partials += [partial_name(target.bucket, chunk) for chunk in chunks]
                report.enqueued += len(keys)
                report.messages += messages
                report.batches += calls
            token = next_token
            if token is None:
                break
            if deadline.expired(HANDOVER_RESERVE_SECONDS):
                report.resume_at = SweepPosition(index, token)
                return report
        token = None
    return report


def probe_newest_versions(kms: KeyVersions, key_tags: list[str], deadline: Deadline) -> dict[str, int]:
    """The newest version of each key tag (one request each): from the key info where the API generation
    offers it, otherwise by encrypting a fixed probe.

    The rotate functions cache each key's newest version for a short while; passing it along in
    the rotate requests means a sweep run right after a rotation is never answered from a cache
    that predates the rotation."""
    newest = {}
    for key_tag in key_tags:
        newest[key_tag] = kms.newest_version(key_tag, deadline)
    return newest


def _newest_if_known(kms: KeyVersions, settings: Settings, deadline: Deadline) -> dict[str, int]:
    """The default key's newest version for a census run's listing record (what a retirement checks has
    not changed since); a census goes on without it when NCP cannot be asked now."""
    try:
        return probe_newest_versions(kms, [settings.key_tag] if settings.key_tag else [], deadline)
    except RewrapError as error:
        logger.warning("newest key version not known for the census run", extra={"reason": error.reason})
        return {}


def _selected(item: Listed, settings: Settings) -> bool:
    if settings.sweep_max_object_bytes and item.size > settings.sweep_max_object_bytes:
        return False
    if settings.sweep_modified_after and item.last_modified <= settings.sweep_modified_after:
        return False
    return not (settings.sweep_modified_before and item.last_modified >= settings.sweep_modified_before)


def _plan(event: Any, settings: Settings) -> tuple[list[SweepTarget], SweepPosition]:
    """Targets and starting point: a continuation, a manual ``{"targets": [...]}``, or the schedule."""
    if isinstance(event, dict) and isinstance(event.get("rewrapSweep"), dict):
        state = event["rewrapSweep"]
        targets = [SweepTarget.parse(t) for t in state.get("targets", [])]
        return targets, SweepPosition(int(state.get("target", 0)), state.get("continuationToken"))
    if isinstance(event, dict) and isinstance(event.get("targets"), list):
        targets = [SweepTarget.parse(str(t)) for t in event["targets"]]
    elif isinstance(event, dict) and (event.get("source") == "aws.events" or not set(event) - {"mode", "runId"}):
        targets = list(settings.sweep_targets)
    else:
        raise UnsupportedEventError(f"sweep: unrecognised event; fields: {sorted(map(str, event))[:12]}")
    refused = [t.bucket for t in targets if not settings.bucket_allowed(t.bucket)]
    if refused:
        raise ConfigError(f"sweep targets outside REWRAP_BUCKETS: {sorted(set(refused))}")
    if not targets:
        raise ConfigError("no sweep targets: set REWRAP_SWEEP_TARGETS or pass {'targets': [...]}")
    return targets, SweepPosition()


def _target_text(target: SweepTarget) -> str:
    return f"{target.bucket}/{target.prefix}" if target.prefix else target.bucket
