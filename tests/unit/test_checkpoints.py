"""When a sweep of a target may be incremental, decided from its checkpoint (on the in-memory bucket)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rewrap.core.checkpoints import FULL, INCREMENTAL, TargetPlan, advance, checkpoint_location, plan_target
from rewrap.core.config import Settings, SweepTarget
from tests.fakes import MemoryBucket

TARGET = SweepTarget("data-bucket", "docs/")
NOW = datetime.now(UTC)
SETTINGS = Settings(key_tag="k", report_prefix="s3://reports/rewrap/", sweep_clock_skew_seconds=900)


def stored(store: MemoryBucket, **changes: object) -> None:
    """A checkpoint written a day ago by a run that started then, on key version 2."""
    record = {
        "newestVersions": {"k": 2},
        "listingStarted": (NOW - timedelta(days=1)).isoformat(),
        "lastFullStarted": (NOW - timedelta(days=2)).isoformat(),
        "written": datetime.now(UTC).isoformat(),
        **changes,
    }
    where = checkpoint_location(SETTINGS.report_prefix, TARGET)
    store.put(where.bucket, where.prefix, json.dumps(record).encode())


def plan(store: MemoryBucket, settings: Settings = SETTINGS, newest: dict[str, int] | None = None) -> TargetPlan:
    return plan_target(TARGET, settings, store, {"k": 2} if newest is None else newest, NOW, True)


def test_a_checkpoint_at_the_newest_versions_makes_the_sweep_incremental_from_its_listing_less_the_margin() -> None:
    store = MemoryBucket()
    stored(store)
    decided = plan(store)
    assert decided.scope == INCREMENTAL and decided.checkpointed
    assert decided.since == (NOW - timedelta(days=1, seconds=900)).replace(microsecond=0)
    assert decided.last_full == NOW - timedelta(days=2)  # kept: the periodic full sweep counts from it


@pytest.mark.parametrize(
    ("changes", "settings", "newest", "why"),
    [
        ({}, SETTINGS, {"k": 3}, "newest key versions"),
        ({}, SETTINGS, {}, "no key tag to watch"),
        ({"lastFullStarted": (NOW - timedelta(days=7)).isoformat()}, SETTINGS, None, "periodic full sweep"),
        ({}, Settings(key_tag="k", report_prefix=SETTINGS.report_prefix, sweep_full_every_days=0), None, "periodic"),
        ({"written": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, SETTINGS, None, "ahead of S3's"),
        ({"listingStarted": "yesterday"}, SETTINGS, None, "checkpoint unreadable"),
    ],
    ids=["new-version", "no-key", "a-week-old", "every-sweep-full", "clock-ahead", "corrupt"],
)
def test_what_makes_a_scheduled_sweep_full(
    changes: dict[str, object], settings: Settings, newest: dict[str, int] | None, why: str
) -> None:
    store = MemoryBucket()
    stored(store, **changes)
    decided = plan(store, settings, newest)
    assert decided.scope == FULL and why in decided.reason
    assert decided.checkpointed and decided.etag is not None  # the full run replaces it, conditionally


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (Settings(key_tag="k"), "no REWRAP_REPORT_PREFIX"),
        (Settings(key_tag="k", report_prefix=SETTINGS.report_prefix, dry_run=True), "dry run"),
    ],
)
def test_without_a_report_prefix_or_in_a_dry_run_there_is_no_checkpoint(settings: Settings, why: str) -> None:
    store = MemoryBucket()
    stored(store)
    decided = plan(store, settings)
    assert (decided.scope, decided.checkpointed) == (FULL, False) and why in decided.reason
    assert not advance(store, settings, TARGET, decided, run_id="r", newest={"k": 2}, started=NOW, now=NOW)


def test_a_plan_survives_the_hand_over() -> None:
    store = MemoryBucket()
    stored(store)
    decided = plan(store)
    assert TargetPlan.from_state(json.loads(json.dumps(decided.to_state()))) == decided
    assert TargetPlan.from_state(None).scope == FULL  # a hand-over made before checkpoints existed
