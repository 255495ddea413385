"""``rewrap fleet``: start a census or rotation run on the deployed sweep and follow it.

``fleet census|rotate s3://bucket/prefix`` invokes the sweep asynchronously (by function name, or the
stack's ``SweepFunction``) with the targets and a run id it makes up and prints (a rotation is full
unless ``--incremental``); ``fleet status <runId> --reports s3://…`` reads the run's listing records
and partials under ``<reports>census/<runId>/`` and shows keys listed, enqueued and reported (and for
a rotation run, objects rotated, current and failed)."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rewrap.app.runtime import build_store
from rewrap.core.census import CensusKind
from rewrap.core.census_runs import RunMerge, merge_run, run_folder, run_records
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import ObjectStore
from rewrap.errors import ConfigError
from rewrap_cli.common import aws_session, s3_url


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def sweep_function(cloudformation: Any, function: str | None, stack: str | None) -> str:
    """The sweep's function name: given, or the physical id of the stack's SweepFunction."""
    if function:
        return function
    if not stack:
        raise ConfigError("pass --function NAME or --stack NAME (the deployed rewrap stack)")
    try:
        resource = cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId="SweepFunction")
    except Exception as exc:
        raise ConfigError(f"stack {stack!r} has no SweepFunction ({type(exc).__name__})") from exc
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def start(
    lambda_client: Any,
    function: str,
    mode: str,
    targets: list[SweepTarget],
    run_id: str | None,
    incremental: bool = False,
) -> str:
    """Invoke the sweep asynchronously; returns the run id."""
    payload: dict[str, Any] = {"targets": [f"{t.bucket}/{t.prefix}" if t.prefix else t.bucket for t in targets]}
    payload.update(mode=mode, runId=run_id or new_run_id())
    if incremental:
        payload["incremental"] = True
    response = lambda_client.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
    if int(response.get("StatusCode", 0)) != 202:
        raise ConfigError(f"the sweep {function!r} did not accept the invocation (status {response.get('StatusCode')})")
    return str(payload["runId"])


@dataclass
class Status:
    """Where a census run stands, from the run folder's listing records and partials."""

    run_id: str
    listed: int
    enqueued: int
    expected_partials: int
    partials: int
    reported: int
    failed: int  # objects the fleet could not read (kind failed or unreadable)
    listing_done: bool
    rotation: str = ""  # a rotation run: objects per status so far

    @classmethod
    def of(cls, run: RunMerge) -> Status:
        kinds = run.census.kinds
        return cls(
            run.run_id,
            listed=run.listed,
            enqueued=run.enqueued,
            expected_partials=run.expected_partials,
            partials=run.partials,
            reported=run.accounted,
            failed=kinds[CensusKind.FAILED] + kinds[CensusKind.UNREADABLE],
            listing_done=run.listing_done,
            rotation=", ".join(f"{name} {n:,}" for name, n in sorted(run.rotation.statuses.items())),
        )

    @property
    def done(self) -> bool:
        return self.listing_done and self.partials >= self.expected_partials

    def line(self) -> str:
        share = self.reported / self.enqueued if self.enqueued else 0.0
        bar = "#" * int(30 * share) + "." * (30 - int(30 * share))
        listing = "listing done" if self.listing_done else "listing…"
        return (
            f"[{bar}] {share:6.1%}  listed {self.listed:,}  enqueued {self.enqueued:,}  reported {self.reported:,}  "
            f"failed {self.failed:,}  ({listing}; {self.partials:,}/{self.expected_partials:,} partials)"
            + (f"  rotation: {self.rotation}" if self.rotation else "")
        )


def status(store: ObjectStore, reports: str, run_id: str) -> Status:
    folder = run_folder(reports, run_id)
    return Status.of(merge_run(run_records(store, folder), s3_url(folder), None, None))


def run_fleet_start(options: argparse.Namespace) -> int:
    session = aws_session()
    name = sweep_function(session.client("cloudformation"), options.function, options.stack)
    incremental = bool(getattr(options, "incremental", False))
    run_id = start(session.client("lambda"), name, options.mode, options.targets, options.run_id, incremental)
    kind = "census run" if options.mode == "census" else f"{'incremental' if incremental else 'full'} rotation run"
    print(f"{kind} {run_id} started on {name}")
    print(f"  follow it:  rewrap fleet status {run_id} --reports <ReportPrefix> --watch")
    print(f"  verdict:    rewrap census --from-reports <ReportPrefix>census/{run_id}/ --min-version N")
    if options.mode == "rotate":
        print("  (a rotation run proves SAFE only when full and complete; without ReportPrefix it writes no partials)")
    return 0


def run_fleet_status(options: argparse.Namespace) -> int:
    store = build_store(Settings.from_env())
    while True:
        state = status(store, options.reports, options.run_id)
        print(state.line(), flush=True)
        if state.done or not options.watch:
            return 0 if state.done else 1
        time.sleep(options.interval)
