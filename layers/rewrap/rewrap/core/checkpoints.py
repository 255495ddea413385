"""The sweep's checkpoints: what the last complete listing of a target swept at, so that a scheduled sweep
which learns nothing new about the keys enqueues only what changed since.

One small object per target, ``<REWRAP_REPORT_PREFIX>checkpoints/<digest of bucket/prefix>.json``: the
newest version of each watched key when the run started, when its listing started (the function's
clock), when the last full listing started, and the run. A scheduled sweep of a target is
*incremental* when the checkpoint's versions equal the newest ones, the last full listing is younger
than ``REWRAP_SWEEP_FULL_EVERY_DAYS`` and the clocks agree: it still lists the whole target (the
listing is the safety net for missed events) but enqueues only objects S3 says were modified at or
after the checkpoint's listing start less ``REWRAP_SWEEP_CLOCK_SKEW_SECONDS``. Anything else makes it
*full*. Without a report prefix, or in a dry run, there are no checkpoints and every sweep is full.

A checkpoint is written once the target's whole listing has been enqueued, hand-overs included, and
only if it still has the ETag read when the run started (``If-Match``; ``If-None-Match: *`` for the
first one): of two sweeps racing for it, one advances it and the other leaves it alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import ObjectStore, StoredRecord
from rewrap.errors import ObjectChangedError, RewrapError
from rewrap.observability import logger

CHECKPOINT_FORMAT = "rewrap-sweep-checkpoint/1"
CHECKPOINT_FOLDER = "checkpoints"
FULL, INCREMENTAL = "full", "incremental"
# S3 keeps LastModified to the second: a stored time may be up to this much earlier than the write.
S3_TIME_RESOLUTION = timedelta(seconds=1)


def target_text(target: SweepTarget) -> str:
    return f"{target.bucket}/{target.prefix}" if target.prefix else target.bucket


def checkpoint_location(report_prefix: str, target: SweepTarget) -> SweepTarget:
    """Where a target's checkpoint lives: bucket and key (as a ``SweepTarget``'s bucket and prefix)."""
    location = SweepTarget.parse(report_prefix)
    folder = location.prefix.strip("/")
    digest = hashlib.sha256(target_text(target).encode()).hexdigest()[:32]
    name = f"{CHECKPOINT_FOLDER}/{digest}.json"
    return SweepTarget(location.bucket, f"{folder}/{name}" if folder else name)


@dataclass
class TargetPlan:
    """How one run sweeps one target, decided when the run starts and carried through its hand-overs."""

    scope: str  # FULL or INCREMENTAL
    reason: str
    since: datetime | None = None  # incremental: objects modified at or after this are enqueued
    etag: str | None = None  # the checkpoint as read when the run started; None: there was none
    checkpointed: bool = False  # write the checkpoint once the target's listing is done
    last_full: datetime | None = None  # an incremental run keeps the last full listing's start
    full_run: str | None = None  # the last full run over the target, whose verdict ``run_verdicts`` publishes
    judged: bool = False  # that verdict is published

    def to_state(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "reason": self.reason,
            "since": _text(self.since),
            "etag": self.etag,
            "checkpointed": self.checkpointed,
            "lastFull": _text(self.last_full),
            "fullRun": self.full_run,
            "judged": self.judged,
        }

    @classmethod
    def from_state(cls, state: Any) -> TargetPlan:
        if not isinstance(state, dict):  # a hand-over from before checkpoints: full, nothing to advance
            return cls(FULL, "continued without a plan")
        return cls(
            scope=INCREMENTAL if state.get("scope") == INCREMENTAL else FULL,
            reason=str(state.get("reason", "")),
            since=_time(state.get("since")),
            etag=state.get("etag"),
            checkpointed=bool(state.get("checkpointed")),
            last_full=_time(state.get("lastFull")),
            full_run=state.get("fullRun"),
            judged=bool(state.get("judged")),
        )


def plan_target(
    target: SweepTarget,
    settings: Settings,
    store: ObjectStore,
    newest: dict[str, int],
    started: datetime,
    incremental_allowed: bool,
) -> TargetPlan:
    """Full or incremental for ``target``, from its checkpoint (one GET) and what the run was asked for."""
    if not settings.report_prefix:
        return TargetPlan(FULL, "no REWRAP_REPORT_PREFIX: no checkpoints")
    if settings.dry_run:
        return TargetPlan(FULL, "dry run: nothing is rotated, so nothing may be skipped next time")
    location = checkpoint_location(settings.report_prefix, target)
    try:
        record = store.read_record(location.bucket, location.prefix)
    except RewrapError as error:
        return TargetPlan(FULL, f"checkpoint unreadable ({error.reason})")
    if record is None:
        return TargetPlan(FULL, "no checkpoint yet", checkpointed=True)
    plan = TargetPlan(FULL, "", etag=record.etag, checkpointed=True, last_full=started)
    try:
        checkpoint = json.loads(record.data)
        plan.full_run, plan.judged = checkpoint.get("fullRunId"), bool(checkpoint.get("judged"))
        versions = {str(tag): int(v) for tag, v in checkpoint["newestVersions"].items()}
        listing_started, last_full = _time(checkpoint["listingStarted"]), _time(checkpoint["lastFullStarted"])
        written = _time(checkpoint["written"])
    except (ValueError, KeyError, TypeError, AttributeError):
        plan.reason = "checkpoint unreadable (not a checkpoint record)"
        return plan
    if listing_started is None or last_full is None or written is None:
        plan.reason = "checkpoint unreadable (a time is missing)"
        return plan
    plan.reason = _full_because(settings, newest, versions, started, last_full, _clock_ahead(written, record))
    if not incremental_allowed:
        plan.reason = "a full sweep was asked for"
    if plan.reason:
        return plan
    since = listing_started - timedelta(seconds=settings.sweep_clock_skew_seconds)
    plan.scope, plan.last_full = INCREMENTAL, last_full
    plan.since = since.replace(microsecond=0)  # S3's times are whole seconds: never skip the second itself
    plan.reason = f"nothing new about the keys since {_text(listing_started)}"
    return plan


def _full_because(
    settings: Settings,
    newest: dict[str, int],
    versions: dict[str, int],
    started: datetime,
    last_full: datetime,
    ahead: float,
) -> str:
    """Why the checkpoint cannot be trusted for an incremental sweep ("" when it can)."""
    if not newest:
        return "no key tag to watch: set NCP_KMS_KEY_TAG or REWRAP_SWEEP_KEY_TAGS"
    if versions != newest:
        return f"newest key versions {newest}, checkpoint swept at {versions}"
    every = timedelta(days=settings.sweep_full_every_days)
    if started - last_full >= every:
        return f"periodic full sweep (REWRAP_SWEEP_FULL_EVERY_DAYS={settings.sweep_full_every_days:g})"
    if ahead > settings.sweep_clock_skew_seconds:
        return (
            f"the clock that wrote the checkpoint was {ahead:.0f} s ahead of S3's, more than "
            f"REWRAP_SWEEP_CLOCK_SKEW_SECONDS={settings.sweep_clock_skew_seconds}"
        )
    return ""


def _clock_ahead(written: datetime, record: StoredRecord) -> float:
    """How far the writer's clock was ahead of S3's when the checkpoint was written, in seconds (S3 stored
    the time it received the write, to the second, so up to a second and the request's time come off)."""
    return (written - record.last_modified - S3_TIME_RESOLUTION).total_seconds()


def advance(
    store: ObjectStore,
    settings: Settings,
    target: SweepTarget,
    plan: TargetPlan,
    *,
    run_id: str,
    newest: dict[str, int],
    started: datetime,
    now: datetime,
) -> bool:
    """Write the target's checkpoint after its whole listing was enqueued; False when another sweep
    advanced it first (or the write failed: the older checkpoint then stands, which only widens the
    next incremental sweep's window)."""
    if not plan.checkpointed:
        return False
    location = checkpoint_location(settings.report_prefix, target)
    record = {
        "format": CHECKPOINT_FORMAT,
        "target": target_text(target),
        "newestVersions": newest,
        "listingStarted": _text(started),
        "lastFullStarted": _text(started if plan.scope == FULL else plan.last_full or started),
        "runId": run_id,
        "scope": plan.scope,
        "fullRunId": run_id if plan.scope == FULL else plan.full_run,
        "judged": plan.scope != FULL and plan.judged,
        "written": _text(now),
    }
    try:
        store.put_record(location.bucket, location.prefix, json.dumps(record).encode(), "application/json", plan.etag)
    except ObjectChangedError:
        logger.warning("checkpoint advanced by another sweep; left as it is", extra={"target": record["target"]})
        return False
    except RewrapError as error:
        logger.warning("checkpoint not written", extra={"target": record["target"], "reason": error.reason})
        return False
    return True


def _text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
