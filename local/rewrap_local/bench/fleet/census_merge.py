"""A census run's partials fetched from the reports bucket and merged (``merge_run``), the merge timed
on its own."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .params import NEWEST, REPORTS_BUCKET, Seeded
from .stack import FleetStack


def merge_census(stack: FleetStack, seeded: Seeded, run_id: str) -> tuple[Any, dict[str, Any]]:
    """Fetch the run's partials and merge them (``merge_run``, timed on its own: the fastest of 3)."""
    from rewrap.census_runs import merge_run

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
    fetch_s = time.perf_counter() - started
    url = f"s3://{REPORTS_BUCKET}/{folder}"
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        run = merge_run(records, url, NEWEST, None)
        timings.append(time.perf_counter() - began)
    return run, {"partials": run.partials, "fetch_s": round(fetch_s, 3), "merge_s": round(min(timings), 4)}
