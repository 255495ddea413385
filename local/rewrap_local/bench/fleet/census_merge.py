"""A census run's partials fetched from the reports bucket and merged (``merge_run``); and the merges
of every run timed together once every size has run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .params import NEWEST, REPORTS_BUCKET, Seeded
from .stack import FleetStack

Run = TypeVar("Run", bound=Hashable)  # what names a census run: (size, phase)


@dataclass
class RunPartials:
    """What a census run left in its folder: (name, body) per object, fetched."""

    url: str
    records: list[tuple[str, bytes]]
    fetch_s: float

    def merge(self) -> Any:
        from rewrap.core.census_runs import merge_run

        return merge_run(self.records, self.url, NEWEST, None)


def fetch_partials(stack: FleetStack, seeded: Seeded, run_id: str) -> RunPartials:
    folder = f"{seeded.bucket}/census/{run_id}/"
    started = time.perf_counter()
    keys = [
        item["Key"]
        for page in stack.admin.get_paginator("list_objects_v2").paginate(Bucket=REPORTS_BUCKET, Prefix=folder)
        for item in page.get("Contents", [])
    ]

    def fetch(key: str) -> tuple[str, bytes]:
        return key.rpartition("/")[2], stack.admin.get_object(Bucket=REPORTS_BUCKET, Key=key)["Body"].read()

    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(fetch, keys))
    return RunPartials(f"s3://{REPORTS_BUCKET}/{folder}", records, time.perf_counter() - started)


def time_merges(runs: Mapping[Run, RunPartials], repeats: int) -> dict[Run, dict[str, Any]]:
    """Every run's merge timed ``repeats`` times (at least once), interleaved: each round merges every
    run once, in turn (the order reversed every other round), so a busy spell of the shared machine,
    which lasts longer than a round, slows every size alike instead of one size's merges.

    Per merge, its wall time and the CPU time of this thread (the merge is all CPU: no I/O, no threads)."""
    timings: dict[Run, list[tuple[float, float]]] = {key: [] for key in runs}
    order = list(runs)
    for round_ in range(max(1, repeats)):
        for key in order if round_ % 2 == 0 else reversed(order):
            began, cpu_began = time.perf_counter(), time.thread_time()
            runs[key].merge()
            timings[key].append((time.perf_counter() - began, time.thread_time() - cpu_began))
    return {key: merge_timing(timed) for key, timed in timings.items()}


def merge_timing(timings: list[tuple[float, float]]) -> dict[str, Any]:
    """The merge's figures, each the median of the timed merges. The judged one is CPU time: on a
    shared machine a merge's wall time doubles when another process takes the core, its CPU time
    much less; and one slow merge among the repeats does not move a median."""
    wall = [w for w, _ in timings]
    cpu = [c for _, c in timings]
    return {
        "merge_s": round(statistics.median(wall), 6),
        "merge_cpu_s": round(statistics.median(cpu), 6),
        "merge_cpu_s_range": [round(min(cpu), 6), round(max(cpu), 6)],
        "merge_repeats": len(timings),
    }
