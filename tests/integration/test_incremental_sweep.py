"""Incremental sweeps: per target a checkpoint under the report prefix; a scheduled sweep that learns
nothing new about the keys lists everything but enqueues only what changed since its last listing.

S3 keeps LastModified to the second and its clock cannot be driven from here, so these tests wait for
the next second where the order of writes and listings matters (``next_second``); the function's own
clock is the runtime's ``clock``, set by hand where a test needs it elsewhere."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rewrap.app.runtime import Runtime
from rewrap.core.checkpoints import checkpoint_location
from rewrap.core.config import SweepTarget
from rewrap.core.dispatch import rotate_event
from rewrap.core.sweep import sweep_event
from rewrap.core.tokens import scan
from rewrap.deadline import Clock
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3  # the conditional checkpoint writes are S3 semantics: LocalStack too
SCHEDULE = load_event("schedule.json")


class Sweeps:
    """The sweep and rotate routes on one stack, with reports and checkpoints under reports/, sweeping data/."""

    def __init__(self, stack: LocalStack, runtime: Runtime, **settings: Any) -> None:
        self.stack = stack
        self.s3 = stack.client("s3")
        options = {
            "report_prefix": f"s3://{stack.bucket}/reports/",
            "sweep_targets": (SweepTarget(stack.bucket, "data/"),),
            "sweep_clock_skew_seconds": 0,
            "sweep_page_size": 1000,
            **settings,
        }
        self.runtime = dataclasses.replace(runtime, settings=dataclasses.replace(runtime.settings, **options))
        self.handed_over: list[dict[str, Any]] = []
        self.runtime.continue_async = lambda context, payload: self.handed_over.append(payload)  # type: ignore[method-assign]

    def with_clock(self, ahead_seconds: float) -> Sweeps:
        """The same sweeps on a function whose clock is ``ahead_seconds`` ahead of this machine's."""
        self.runtime = dataclasses.replace(self.runtime, clock=Clock(wall=lambda: time.time() + ahead_seconds))
        return self

    def sweep(self, event: dict[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
        return sweep_event(SCHEDULE if event is None else event, context or LambdaContext(), self.runtime)

    def drain(self) -> dict[str, int]:
        sqs = self.stack.client("sqs")
        return drain_queue(sqs, self.stack.queue_url, lambda e, c: rotate_event(e, c, self.runtime))

    def queued(self) -> list[dict[str, Any]]:
        """The rotate requests on the queue (taken off it)."""
        sqs, bodies = self.stack.client("sqs"), []
        while messages := sqs.receive_message(QueueUrl=self.stack.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def queued_keys(self) -> list[str]:
        return sorted(key for body in self.queued() for key in body["keys"])

    def checkpoint(self) -> dict[str, Any] | None:
        where = checkpoint_location(self.runtime.settings.report_prefix, SweepTarget(self.stack.bucket, "data/"))
        try:
            return dict(json.loads(self.s3.get_object(Bucket=where.bucket, Key=where.prefix)["Body"].read()))
        except self.s3.exceptions.NoSuchKey:
            return None

    def write(self, keys: list[str], version_tokens: list[str]) -> None:
        for key, token in zip(keys, version_tokens, strict=True):
            self.s3.put_object(Bucket=self.stack.bucket, Key=key, Body=json.dumps({"secret": token}).encode())

    def versions(self, key: str) -> set[int]:
        body = self.s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
        return {t.version for t in scan(body)[0]}


class OutOfTime(LambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 1000  # below the hand-over reserve: one page, then hand over


def next_second() -> None:
    """Wait until S3's next whole second: what is written after this is stamped later than what came before."""
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture
def sweeps(stack: LocalStack, runtime: Runtime) -> Iterator[Sweeps]:
    yield Sweeps(stack, runtime)


def old_tokens(runtime: Runtime, stack: LocalStack, count: int) -> list[str]:
    return runtime.kms.encrypt(stack.key_tag, [f"secret-{i}".encode() for i in range(count)])


def test_a_scheduled_sweep_that_learns_nothing_new_enqueues_only_what_changed(
    sweeps: Sweeps, stack: LocalStack, runtime: Runtime
) -> None:
    # Given six objects on v1, and the key rotated
    tokens = old_tokens(runtime, stack, 7)
    keys = [f"data/{i}.json" for i in range(6)]
    sweeps.write(keys, tokens[:6])
    stack.kms.rotate(stack.key_tag)
    next_second()

    # When the schedule fires: no checkpoint yet, so a full sweep, and everything ends at v2
    first = sweeps.sweep()
    assert (first["scope"], first["enqueued"]) == ("full", 6)
    sweeps.drain()
    assert all(sweeps.versions(key) == {2} for key in keys)
    checkpoint = sweeps.checkpoint()
    assert checkpoint is not None and checkpoint["newestVersions"] == {stack.key_tag: 2}
    assert checkpoint["runId"] == first["runId"]

    # The next one is incremental: it takes what the first run wrote after its listing started (S3 cannot
    # tell rewrap's writes from anyone else's), and they are found current
    next_second()
    second = sweeps.sweep()
    assert (second["scope"], second["enqueued"], second["listed"]) == ("incremental", 6, 6)
    sweeps.drain()

    # Then a converged target's sweep lists it and enqueues nothing
    next_second()
    third = sweeps.sweep()
    assert (third["scope"], third["listed"], third["unchanged"], third["enqueued"]) == ("incremental", 6, 6, 0)
    assert sweeps.queued() == []

    # And an object written without an event since is taken by the next sweep, and rotated
    sweeps.write(["data/new.json"], tokens[6:])
    next_second()
    fourth = sweeps.sweep()
    assert (fourth["scope"], fourth["enqueued"]) == ("incremental", 1)
    sweeps.drain()
    assert sweeps.versions("data/new.json") == {2}


def test_a_new_key_version_or_the_periodic_full_sweep_makes_a_scheduled_sweep_full(
    sweeps: Sweeps, stack: LocalStack, runtime: Runtime
) -> None:
    sweeps.write([f"data/{i}.json" for i in range(3)], old_tokens(runtime, stack, 3))
    sweeps.sweep()
    sweeps.drain()
    next_second()
    assert sweeps.sweep()["scope"] == "incremental"
    sweeps.queued()

    # a rotation of the key: everything is enqueued again
    stack.kms.rotate(stack.key_tag)
    rotated = sweeps.sweep()
    assert (rotated["scope"], rotated["enqueued"]) == ("full", 3)
    assert sweeps.queued()[0]["newestVersions"] == {stack.key_tag: 2}
    assert sweeps.checkpoint()["newestVersions"] == {stack.key_tag: 2}  # type: ignore[index]

    # a week on, the periodic full sweep takes everything, whatever changed
    later = sweeps.with_clock(ahead_seconds=0).sweep()
    assert later["scope"] == "incremental"
    sweeps.queued()
    week = sweeps.with_clock(ahead_seconds=7 * 86400).sweep()
    assert (week["scope"], week["enqueued"]) == ("full", 3)


def test_by_hand_a_sweep_is_full_unless_asked_otherwise(sweeps: Sweeps, stack: LocalStack, runtime: Runtime) -> None:
    sweeps.write([f"data/{i}.json" for i in range(2)], old_tokens(runtime, stack, 2))
    sweeps.sweep()
    sweeps.queued()
    next_second()
    manual = {"targets": [f"{stack.bucket}/data/"]}
    assert (sweeps.sweep(manual)["scope"], len(sweeps.queued_keys())) == ("full", 2)
    asked = sweeps.sweep({**manual, "incremental": True})
    assert (asked["scope"], asked["enqueued"]) == ("incremental", 0)


def test_without_a_report_prefix_every_sweep_is_full(stack: LocalStack, runtime: Runtime) -> None:
    sweeps = Sweeps(stack, runtime, report_prefix="")
    sweeps.write([f"data/{i}.json" for i in range(3)], old_tokens(runtime, stack, 3))
    for _ in range(2):
        answer = sweeps.sweep()
        assert (answer["scope"], answer["enqueued"]) == ("full", 3)
        assert len(sweeps.queued_keys()) == 3
        next_second()
    listed = sweeps.s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])
    assert [item["Key"] for item in listed if not item["Key"].startswith("data/")] == []  # no checkpoint anywhere


def test_a_hand_over_mid_listing_advances_the_checkpoint_once_the_listing_is_done(
    stack: LocalStack, runtime: Runtime
) -> None:
    sweeps = Sweeps(stack, runtime, sweep_page_size=2)
    keys = [f"data/{i}.json" for i in range(5)]
    sweeps.write(keys, old_tokens(runtime, stack, 5))

    # the first invocation lists one page and hands over: the checkpoint does not move yet
    first = sweeps.sweep(context=OutOfTime())
    assert first["continued"] is True and sweeps.checkpoint() is None
    while sweeps.handed_over:
        payload = sweeps.handed_over.pop()
        assert payload["rewrapSweep"]["runId"] == first["runId"]
        last = sweeps.sweep(payload, OutOfTime())
        if last["continued"] is False:
            break
        assert sweeps.checkpoint() is None

    # once the whole listing is enqueued, it records the run and when its listing started
    checkpoint = sweeps.checkpoint()
    assert checkpoint is not None and checkpoint["runId"] == first["runId"] and checkpoint["scope"] == "full"
    assert sweeps.queued_keys() == keys  # every key exactly once across the hand-overs


def test_a_version_change_in_the_middle_of_a_run_makes_the_next_sweep_full(stack: LocalStack, runtime: Runtime) -> None:
    sweeps = Sweeps(stack, runtime, sweep_page_size=2)
    sweeps.write([f"data/{i}.json" for i in range(4)], old_tokens(runtime, stack, 4))
    sweeps.sweep(context=OutOfTime())

    # the key rotates while the run is handing over
    stack.kms.rotate(stack.key_tag)
    while sweeps.handed_over:
        sweeps.sweep(sweeps.handed_over.pop())

    # the later requests carry the new version; the checkpoint keeps the version the run started at
    hints = [body["newestVersions"][stack.key_tag] for body in sweeps.queued()]
    assert hints == [1, 2]
    assert sweeps.checkpoint()["newestVersions"] == {stack.key_tag: 1}  # type: ignore[index]
    next_second()
    after = sweeps.sweep()
    assert (after["scope"], after["enqueued"]) == ("full", 4)


@pytest.mark.parametrize("existing", [False, True], ids=["first-checkpoint", "existing-checkpoint"])
def test_two_sweeps_racing_for_one_checkpoint_never_both_advance_it(
    stack: LocalStack, runtime: Runtime, existing: bool
) -> None:
    sweeps = Sweeps(stack, runtime, sweep_page_size=2)
    sweeps.write([f"data/{i}.json" for i in range(3)], old_tokens(runtime, stack, 3))
    if existing:
        sweeps.sweep()
    before = sweeps.checkpoint()

    # Given a slow sweep that read the checkpoint and handed over mid-listing
    slow = sweeps.sweep(context=OutOfTime())
    (payload,) = sweeps.handed_over
    sweeps.handed_over.clear()
    # When a second sweep runs start to end meanwhile, and then the slow one finishes
    fast = sweeps.sweep()
    assert sweeps.checkpoint()["runId"] == fast["runId"]  # type: ignore[index]
    finished = sweeps.sweep(payload)

    # Then the checkpoint is the fast sweep's: the slow one's conditional write was refused
    assert finished["continued"] is False and slow["runId"] != fast["runId"]
    checkpoint = sweeps.checkpoint()
    assert checkpoint is not None and checkpoint["runId"] == fast["runId"]
    assert before is None or before["runId"] != fast["runId"]


def test_a_clock_skew_larger_than_the_margin_makes_the_next_sweep_full(stack: LocalStack, runtime: Runtime) -> None:
    # Given a sweep run by a function whose clock is ahead of S3's, and an object written after its listing
    # (its page already listed: only the next sweep can take it)
    margin = 60
    tokens = old_tokens(runtime, stack, 3)
    for ahead, expected in ((30, "incremental"), (3 * margin, "full")):
        sweeps = Sweeps(stack, runtime, sweep_clock_skew_seconds=margin).with_clock(ahead)
        sweeps.write(["data/old.json"], tokens[:1])
        sweeps.sweep()
        sweeps.queued()
        sweeps.write([f"data/after-{ahead}.json"], tokens[1:2])

        # When the next sweep runs (on a clock that agrees with S3's)
        after = sweeps.with_clock(0).sweep()

        # Then within the margin it is incremental and the window still covers the object; beyond the
        # margin the skew is noticed and the sweep is full: the object is taken either way
        assert after["scope"] == expected
        assert f"data/after-{ahead}.json" in sweeps.queued_keys()
