"""``rewrap plan``'s second table: what the scheduled sweep costs per day once the bucket has converged,
and what a rotation run adds to the rotation itself.

The model follows the sweep (``rewrap.core.sweep``, ``checkpoints``, ``run_verdicts``):

- every scheduled sweep lists every object (the safety net), ``--page-size`` keys a LIST, and per
  invocation reads its checkpoint and the bucket's versioning and writes its checkpoint, its report and
  its listing record; one invocation lists for at most 14 minutes at ``--seconds-per-page``;
- an incremental sweep enqueues only what was modified since the last listing: ``--changed-per-day``
  objects (written with an event or without one), each answered with one read (the event path has
  rotated them, or rotating them is the rotation's cost, not this one's);
- one sweep in ``--full-every-days`` is full: every object enqueued and read once;
- what is enqueued costs its share of SQS messages (``--keys-per-message``; send in tens, receive,
  delete), of rotate invocations (ten messages each), its Lambda time (``--seconds-per-object``) and one
  partial per message (a PUT);
- a full run's verdict reads its partials once (a GET each, a LIST per thousand).

A rotation run adds, to the rotation ``make_plan`` counts, its partials and their reading for the verdict,
and the next sweep's second look at what the run wrote (S3's listing cannot tell rewrap's writes from an
application's): one read and the queue's share per object written.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass

from rewrap_cli.common import table
from rewrap_cli.plan import Fleet, Inventory, Plan, Prices

SWEEP_SECONDS_PER_INVOCATION = 14 * 60  # of its 15 minutes, listing before it hands over
OWN_READS_PER_INVOCATION = 2  # the checkpoint and the bucket's versioning
OWN_WRITES_PER_INVOCATION = 3  # the checkpoint, the sweep's report, the run's listing record


@dataclass(frozen=True)
class Schedule:
    sweeps_per_day: float = 1.0  # SweepSchedule rate(1 day)
    full_every_days: float = 7.0  # REWRAP_SWEEP_FULL_EVERY_DAYS (0: every sweep full)
    changed_per_day: int | None = None  # objects modified per day; None: 0.1% of the objects
    page_size: int = 1000  # REWRAP_SWEEP_PAGE_SIZE
    keys_per_message: int = 10  # REWRAP_SWEEP_KEYS_PER_MESSAGE as the template sets it
    seconds_per_page: float = 0.1  # one LIST of a thousand keys, in the sweep
    sweep_memory_gb: float = 0.25  # the sweep function's memory


@dataclass
class Tally:
    """Requests and time, and their cost."""

    lists: float = 0.0
    reads: float = 0.0
    writes: float = 0.0
    sqs: float = 0.0
    invocations: float = 0.0
    gb_seconds: float = 0.0
    enqueued: float = 0.0

    def add(self, other: Tally, times: float = 1.0) -> Tally:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + times * getattr(other, name))
        return self

    def cost(self, prices: Prices) -> float:
        return (
            (self.lists + self.writes) / 1000 * prices.s3_write_per_1k
            + self.reads / 1000 * prices.s3_read_per_1k
            + self.sqs / 1e6 * prices.sqs_per_1m_requests
            + self.invocations / 1e6 * prices.lambda_per_1m_requests
            + self.gb_seconds * prices.lambda_gb_second
        )


def enqueued(objects: float, schedule: Schedule, fleet: Fleet, reads_each: float = 1.0) -> Tally:
    """``objects`` sent to the fleet and read once each: the queue, the rotate invocations, the partials."""
    messages = objects / schedule.keys_per_message
    return Tally(
        reads=objects * reads_each,
        writes=messages,  # one partial per message
        sqs=messages / 10 + 2 * messages,
        invocations=messages / 10,
        gb_seconds=objects * fleet.seconds_per_object * fleet.memory_gb,
        enqueued=objects,
    )


def listing(objects: int, schedule: Schedule) -> tuple[Tally, float]:
    """One sweep's listing of ``objects`` and its own records; and how long it lists, in seconds."""
    pages = math.ceil(objects / schedule.page_size)
    seconds = pages * schedule.seconds_per_page
    invocations = max(1, math.ceil(seconds / SWEEP_SECONDS_PER_INVOCATION))
    tally = Tally(
        lists=pages,
        reads=OWN_READS_PER_INVOCATION * invocations,
        writes=OWN_WRITES_PER_INVOCATION * invocations,
        invocations=invocations,
        gb_seconds=seconds * schedule.sweep_memory_gb,
    )
    return tally, seconds


@dataclass
class SteadyState:
    objects: int
    changed: int
    incremental: Tally
    full: Tally
    per_day: Tally
    today: Tally  # every scheduled sweep full, as before checkpoints
    listing_hours: float

    def rows(self, prices: Prices) -> list[tuple[str, str, str]]:
        def usd(tally: Tally) -> str:
            return f"${tally.cost(prices):,.2f}"

        day = self.per_day
        return [
            ("objects; modified per day", f"{self.objects:,}; {self.changed:,}", ""),
            ("an incremental sweep", f"{self.incremental.enqueued:,.0f} enqueued", usd(self.incremental)),
            ("a full sweep", f"{self.full.enqueued:,.0f} enqueued", usd(self.full)),
            ("per day: S3 LIST", f"{day.lists:,.0f}", f"${day.lists / 1000 * prices.s3_write_per_1k:,.2f}"),
            ("per day: S3 reads, writes", f"{day.reads:,.0f}, {day.writes:,.0f}", ""),
            ("per day: SQS, Lambda invocations", f"{day.sqs:,.0f}, {day.invocations:,.0f}", ""),
            ("per day: keys enqueued", f"{day.enqueued:,.0f}", ""),
            ("per day, in all", f"{day.enqueued / max(1, self.objects):.4f} enqueued/object", usd(day)),
            ("per day if every sweep were full", f"{self.today.enqueued:,.0f} enqueued", usd(self.today)),
            ("one listing takes", _duration(self.listing_hours), ""),
        ]


def steady_state(objects: int, schedule: Schedule, fleet: Fleet) -> SteadyState:
    changed = schedule.changed_per_day if schedule.changed_per_day is not None else math.ceil(objects / 1000)
    sweep, seconds = listing(objects, schedule)
    per_sweep_changed = changed / schedule.sweeps_per_day
    incremental = Tally().add(sweep).add(enqueued(per_sweep_changed, schedule, fleet))
    full = Tally().add(sweep).add(enqueued(objects, schedule, fleet))
    every = schedule.full_every_days
    full_share = 1.0 if every <= 0 else min(1.0, 1.0 / (every * schedule.sweeps_per_day))
    per_day = Tally().add(incremental, schedule.sweeps_per_day * (1 - full_share))
    per_day.add(full, schedule.sweeps_per_day * full_share)
    today = Tally().add(full, schedule.sweeps_per_day)
    return SteadyState(objects, changed, incremental, full, per_day, today, seconds / 3600)


def rotation_run_extras(written: int, objects: int, schedule: Schedule, fleet: Fleet) -> tuple[Tally, Tally]:
    """What a rotation run over ``objects`` that writes ``written`` costs besides the rotation: its partials,
    written and read once for the verdict; and the next sweep's second look at what it wrote."""
    messages = objects / schedule.keys_per_message
    proof = Tally(writes=messages, reads=messages, lists=math.ceil(messages / 1000))
    return proof, enqueued(written, schedule, fleet)


def assumed_inventory(objects: int, tokens_per_object: int, tokens_per_request: int) -> Inventory:
    """``objects`` text objects of ``tokens_per_object`` tokens each, all older than the newest version."""
    stale = objects if tokens_per_object else 0
    return Inventory(
        objects=Counter({"text": objects}),
        stale_objects=stale,
        stale_tokens=stale * tokens_per_object,
        tokens=objects * tokens_per_object,
        kms_requests=math.ceil(stale * tokens_per_object / tokens_per_request),  # objects share requests
    )


def schedule_of(options: argparse.Namespace) -> Schedule:
    return Schedule(
        sweeps_per_day=options.sweeps_per_day,
        full_every_days=options.full_every_days,
        changed_per_day=options.changed_per_day,
        keys_per_message=options.keys_per_message,
        seconds_per_page=options.seconds_per_page,
    )


def print_lifecycle(plan: Plan, fleet: Fleet, prices: Prices, schedule: Schedule) -> None:
    """The rotation run's additions to the plan above, and the scheduled sweep's cost per day after it."""
    objects = sum(plan.inventory.objects.values())
    proof, second_look = rotation_run_extras(plan.inventory.stale_objects, objects, schedule, fleet)
    rotation = sum(v for v in plan.costs.values() if v is not None)
    added = proof.cost(prices) + second_look.cost(prices)
    print("  as a rotation run of the fleet (a full sweep with a report prefix):")
    rows = [
        ("partials, written and read for the verdict", f"{proof.writes:,.0f}", f"${proof.cost(prices):,.2f}"),
        ("the next sweep's second look", f"{second_look.enqueued:,.0f} objects", f"${second_look.cost(prices):,.2f}"),
        ("the rotation run in all", "", f"${rotation + added:,.2f}"),
    ]
    table(("", "count", "cost"), rows)
    state = steady_state(objects, schedule, fleet)
    every = f"every {schedule.full_every_days:g} days" if schedule.full_every_days else "every sweep"
    print(f"  then the scheduled sweep, {schedule.sweeps_per_day:g} a day, full {every}:")
    table(("", "count", "cost"), state.rows(prices))
    if state.listing_hours * schedule.sweeps_per_day > 24:
        print(
            f"  a listing takes {state.listing_hours:,.1f} h at {schedule.seconds_per_page:g} s a page, longer than "
            "the schedule allows: sweep less often (events rotate what changes) or split the objects among stacks"
        )


def _duration(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:,.1f} min"
