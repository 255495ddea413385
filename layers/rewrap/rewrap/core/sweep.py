"""The sweep: list the configured targets and enqueue rotate requests for the rotate fleet.

Every sweep is a *run* with an id. A rotation run plans each target when it starts (``checkpoints``):
*full* enqueues every listed object, *incremental* (a scheduled sweep that learns nothing new about
the keys) still lists everything but enqueues only objects modified since the last listing. A
listing longer than one invocation can finish hands over to a follow-up invocation at a page
boundary, with the run's plan: the pages before it were fully enqueued, the pages after it were not
touched, so no key is skipped or sent twice by the hand-over. A target's checkpoint advances once its
whole listing has been enqueued. What differs between a rotation run and a census run (census requests,
never a write) is the run's ``RunKind``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census import MAX_UNKNOWN_EXAMPLES
from rewrap.core.census_runs import partial_name, run_folder, write_listing
from rewrap.core.checkpoints import FULL, TargetPlan, advance, plan_target, target_text
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import KeyVersions, Listed, Notifier, ObjectStore, RequestQueue
from rewrap.core.reports import publish_report
from rewrap.core.run_verdicts import publish_due_verdicts
from rewrap.deadline import Clock, Deadline
from rewrap.errors import ConfigError, RewrapError, UnsupportedEventError
from rewrap.observability import logger, metrics

# Stop listing and hand over when less than this much time is left.
HANDOVER_RESERVE_SECONDS = 20.0


@dataclass(frozen=True)
class RunKind:
    """The requests a run enqueues, and what follows from their kind."""

    mode: str  # the run's ``mode``, in its event and its hand-overs
    names_mode: bool  # its requests and the sweep's answer name the mode (a request without one is a rotate request)
    passes_newest: bool  # its requests carry the newest key versions, for the rotate functions' caches
    skips_archived: bool  # archived objects are not enqueued (S3 cannot serve their bodies), the first few named
    plans_targets: bool  # targets planned full or incremental, checkpoints kept, the last runs' verdicts published
    always_proves: bool  # its requests always write partials, and its sweep listing records (a report prefix)

    def message_fields(self, run: SweepRun, newest: dict[str, int] | None) -> dict[str, Any]:
        """What each request carries besides its bucket and keys."""
        fields: dict[str, Any] = {"mode": self.mode} if self.names_mode else {}
        if self.passes_newest and newest:
            fields["newestVersions"] = newest
        if run.proves:
            fields["runId"] = run.run_id
        return fields


ROTATION = RunKind(
    "rotate", names_mode=False, passes_newest=True, skips_archived=True, plans_targets=True, always_proves=False
)
# census requests: scanned and counted, never written (``census_route`` answers them)
CENSUS_RUN = RunKind(
    "census", names_mode=True, passes_newest=False, skips_archived=False, plans_targets=False, always_proves=True
)
RUN_KINDS = {kind.mode: kind for kind in (ROTATION, CENSUS_RUN)}


@dataclass
class SweepPosition:
    target: int = 0
    continuation_token: str | None = None


@dataclass
class SweepRun:
    """What a run carries from its first invocation through every hand-over."""

    run_id: str
    kind: RunKind = ROTATION
    targets: list[SweepTarget] = field(default_factory=list)
    sequence: int = 0  # this invocation's place in the run
    started: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the run's listing started
    newest: dict[str, int] = field(default_factory=dict)  # the watched keys' newest versions at the start
    plans: list[TargetPlan] = field(default_factory=list)  # per target; empty: every target full
    proves: bool = False  # its requests answer with partials and it writes listing records (a report prefix)

    def plan(self, index: int) -> TargetPlan:
        return self.plans[index] if index < len(self.plans) else TargetPlan(FULL, "")

    @property
    def scope(self) -> str:
        scopes = {plan.scope for plan in self.plans} or {FULL}
        return scopes.pop() if len(scopes) == 1 else "mixed"

    def to_state(self) -> dict[str, Any]:
        return {
            "targets": [target_text(t) for t in self.targets],
            "mode": self.kind.mode,
            "runId": self.run_id,
            "sequence": self.sequence + 1,
            "started": self.started.isoformat(),
            "newestVersions": self.newest,
            "plans": [plan.to_state() for plan in self.plans],
        }


@dataclass
class SweepReport:
    listed: int = 0
    archived: int = 0  # GLACIER / DEEP_ARCHIVE, not restored: skipped (S3 cannot serve their bodies)
    unchanged: int = 0  # incremental: listed, but not modified since the target's last listing
    enqueued: int = 0
    messages: int = 0
    batches: int = 0
    pages: int = 0
    resume_at: SweepPosition | None = None  # set when a follow-up invocation continues the listing
    finished: list[int] = field(default_factory=list)  # targets whose listing ended in this invocation
    partials: list[str] = field(default_factory=list)  # the partial each message answers with (a run's)
    archived_examples: list[str] = field(default_factory=list)  # a rotation's first few archived, not enqueued

    def to_dict(self) -> dict[str, Any]:
        fields = ("listed", "archived", "unchanged", "enqueued", "messages", "batches", "pages")
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
    @property
    def clock(self) -> Clock: ...
    @property
    def notifier(self) -> Notifier | None: ...

    def continue_async(self, context: Any, payload: dict[str, Any]) -> None:
        """Invoke this function again, asynchronously, with ``payload`` (the hand-over)."""


@dataclass(frozen=True)
class SweepTools:
    """What an invocation lists with and sends requests to, and the settings that size and filter both."""

    settings: Settings
    store: ObjectStore
    queue: RequestQueue


def sweep_event(event: Any, context: Any, services: SweepServices) -> dict[str, Any]:
    settings, store, queue = services.settings, services.store, services.rotate_queue
    if queue is None:
        raise ConfigError("REWRAP_QUEUE_URL is not set; the sweep has nowhere to send work")
    targets, position, state = _plan(event, settings)
    deadline = Deadline.from_lambda_context(context, 0.0)
    run = _run(state, targets, services, deadline)
    if run.kind.plans_targets and run.sequence == 0 and run.proves:  # the last full runs' verdicts, once each
        publish_due_verdicts(run.plans, settings, store, services.kms, services.notifier, deadline)
    hints = _newest_versions(run, services, deadline)
    report = run_sweep(run, position, SweepTools(settings, store, queue), deadline, hints)
    if report.resume_at is not None:
        state = run.to_state()
        state.update(target=report.resume_at.target, continuationToken=report.resume_at.continuation_token)
        services.continue_async(context, {"rewrapSweep": state})
        metrics.add_metric(name="SweepContinuations", unit=MetricUnit.Count, value=1)
    now = _now(services.clock)
    advanced = [
        advance(
            store, settings, targets[i], run.plan(i), run_id=run.run_id, newest=run.newest, started=run.started, now=now
        )
        for i in report.finished
        if run.plan(i).checkpointed
    ]
    _count(report, sum(advanced), len(advanced) - sum(advanced))
    summary = {**report.to_dict(), "runId": run.run_id, "scope": run.scope}
    logger.info("sweep done", extra={**summary, "plans": [p.to_state() for p in run.plans]})
    record = {**summary, "targets": [target_text(t) for t in targets], "newestVersions": hints}
    publish_report(settings.report_prefix, store, context, "sweep", [record])
    if run.proves:
        _write_listing_record(run, report, hints, settings, store)
    if run.kind.names_mode:
        return {**report.to_dict(), "mode": run.kind.mode, "runId": run.run_id}
    return summary


def _newest_versions(run: SweepRun, services: SweepServices, deadline: Deadline) -> dict[str, int]:
    """Each invocation asks again: the rotate requests carry the newest versions known when they are sent, and
    a census run's listing records say whether the key rotated while it ran (``retire`` checks)."""
    if not run.kind.passes_newest:
        return _newest_if_known(services.kms, services.settings, deadline)
    return run.newest if run.sequence == 0 else _probe(services, deadline)


def _write_listing_record(
    run: SweepRun, report: SweepReport, newest: dict[str, int], settings: Settings, store: ObjectStore
) -> None:
    """What this invocation listed and enqueued, and the partials it expects: what the run's merge checks."""
    targets = run.targets
    versioning = {t.bucket: store.bucket_versioning(t.bucket) for t in targets}
    listing = {
        **report.to_dict(),
        "targets": [target_text(t) for t in targets],
        "versioning": versioning,
        "newestVersions": newest,
    }
    if run.kind.plans_targets:  # what the merge needs to know of a planned run: its scope, what it left out
        since = {target_text(t): run.plan(i).since for i, t in enumerate(targets)}
        listing.update(mode=run.kind.mode, scope=run.scope, archivedExamples=report.archived_examples)
        listing["since"] = {target: moment.isoformat() for target, moment in since.items() if moment is not None}
    write_listing(settings, store, run.run_id, run.sequence, listing, report.partials)


def _run(state: dict[str, Any], targets: list[SweepTarget], services: SweepServices, deadline: Deadline) -> SweepRun:
    """The run this invocation belongs to: continued from a hand-over, or started (and planned) now."""
    settings = services.settings
    mode = state.get("mode", ROTATION.mode)
    kind = RUN_KINDS.get(mode) if isinstance(mode, str) else None
    if kind is None:
        raise UnsupportedEventError(f"sweep: mode must be 'rotate' or 'census', not {str(mode)[:40]!r}")
    if kind.always_proves:
        run_folder(settings.report_prefix, "-")  # a run that needs somewhere to write: refuse now, not per message
    run_id = state.get("runId") or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    if not isinstance(run_id, str) or "/" in run_id or len(run_id) > 128:
        raise UnsupportedEventError("sweep: runId must be a string without '/'")
    proves = kind.always_proves or bool(settings.report_prefix)
    run = SweepRun(run_id, kind, targets, int(state.get("sequence", 0)), proves=proves)
    if "started" in state:  # a hand-over: the plan was made when the run started
        run.started = datetime.fromisoformat(str(state["started"]))
        run.newest = {str(tag): int(v) for tag, v in dict(state.get("newestVersions") or {}).items()}
        run.plans = [TargetPlan.from_state(plan) for plan in state.get("plans", [])]
        return run
    run.started = _now(services.clock)
    if kind.plans_targets:
        run.newest = _probe(services, deadline)
        incremental = state.get("incremental", state.get("source") == "aws.events") is True
        run.plans = [
            plan_target(target, settings, services.store, run.newest, run.started, incremental) for target in targets
        ]
    return run


def _probe(services: SweepServices, deadline: Deadline) -> dict[str, int]:
    return probe_newest_versions(services.kms, services.settings.watched_key_tags, deadline)


def _now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.wall(), UTC)


def _count(report: SweepReport, advanced: int, refused: int) -> None:
    for name, value in (
        ("ObjectsListed", report.listed),
        ("ObjectsArchivedSkipped", report.archived),
        ("ObjectsUnchangedSkipped", report.unchanged),
        ("KeysEnqueued", report.enqueued),
        ("SweepMessagesSent", report.messages),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if advanced:
        metrics.add_metric(name="SweepCheckpointsAdvanced", unit=MetricUnit.Count, value=advanced)
    if refused:
        metrics.add_metric(name="SweepCheckpointsNotAdvanced", unit=MetricUnit.Count, value=refused)


def run_sweep(
    run: SweepRun,
    position: SweepPosition,
    tools: SweepTools,
    deadline: Deadline,
    newest_versions: dict[str, int] | None = None,
) -> SweepReport:
    """Enqueue the run's requests for its targets from ``position``, as each target's plan says, until the
    listing ends or the deadline calls for a hand-over. A rotation skips archived objects; a census asks
    about them too, so they count as unreadable."""
    settings, store, skips_archived = tools.settings, tools.store, run.kind.skips_archived
    extra = run.kind.message_fields(run, newest_versions)
    report = SweepReport()
    token = position.continuation_token
    for index in range(position.target, len(run.targets)):
        target, since = run.targets[index], run.plan(index).since
        while True:
            items, next_token = store.list_page(target.bucket, target.prefix, token, settings.sweep_page_size)
            report.pages += 1
            report.listed += len(items)
            archived = [f"s3://{target.bucket}/{item.key}: archived, not enqueued" for item in items if item.archived]
            report.archived += len(archived)
            if skips_archived:
                report.archived_examples += archived[: max(0, MAX_UNKNOWN_EXAMPLES - len(report.archived_examples))]
            selected = [item for item in items if not (item.archived and skips_archived) and _selected(item, settings)]
            keys = [item.key for item in selected if since is None or item.last_modified >= since]
            report.unchanged += len(selected) - len(keys)
            if keys:
                chunks: list[list[str]] = []
                messages, calls = tools.queue.send_requests(
                    target.bucket, keys, settings.sweep_keys_per_message, extra or None, chunks
                )
                if run.proves:
                    report.partials += [partial_name(target.bucket, chunk) for chunk in chunks]
                report.enqueued += len(keys)
                report.messages += messages
                report.batches += calls
            token = next_token
            if token is None:
                report.finished.append(index)
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


def _plan(event: Any, settings: Settings) -> tuple[list[SweepTarget], SweepPosition, dict[str, Any]]:
    """Targets, starting point and the run's state: a continuation, a manual ``{"targets": [...]}``, or the
    schedule."""
    if isinstance(event, dict) and isinstance(event.get("rewrapSweep"), dict):
        state = event["rewrapSweep"]
        targets = [SweepTarget.parse(t) for t in state.get("targets", [])]
        return targets, SweepPosition(int(state.get("target", 0)), state.get("continuationToken")), state
    if isinstance(event, dict) and isinstance(event.get("targets"), list):
        targets = [SweepTarget.parse(str(t)) for t in event["targets"]]
    elif isinstance(event, dict) and (
        event.get("source") == "aws.events" or not set(event) - {"mode", "runId", "incremental"}
    ):
        targets = list(settings.sweep_targets)
    else:
        raise UnsupportedEventError(f"sweep: unrecognised event; fields: {sorted(map(str, event))[:12]}")
    refused = [t.bucket for t in targets if not settings.bucket_allowed(t.bucket)]
    if refused:
        raise ConfigError(f"sweep targets outside REWRAP_BUCKETS: {sorted(set(refused))}")
    if not targets:
        raise ConfigError("no sweep targets: set REWRAP_SWEEP_TARGETS or pass {'targets': [...]}")
    return targets, SweepPosition(), event
