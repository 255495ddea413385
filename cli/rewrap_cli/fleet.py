"""``rewrap fleet``: start a census or rotation run on the deployed sweep and follow a census run.

``fleet census|rotate s3://bucket/prefix`` invokes the sweep asynchronously (by function name, or the
stack's ``SweepFunction``) with the targets and, for a census, a run id it makes up and prints;
``fleet status <runId> --reports s3://…`` reads the run's listing records and partials under
``<reports>census/<runId>/`` and shows keys listed, enqueued and reported."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rewrap.census_runs import LISTING_FORMAT, PARTIAL_FORMAT, run_folder
from rewrap.config import Settings, SweepTarget
from rewrap.errors import ConfigError
from rewrap_cli.common import s3_client


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
    except Exception as exc:  # noqa: BLE001 - botocore's errors, explained in one line
        raise ConfigError(f"stack {stack!r} has no SweepFunction ({type(exc).__name__})") from None
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def start(lambda_client: Any, function: str, mode: str, targets: list[SweepTarget], run_id: str | None) -> str:
    """Invoke the sweep asynchronously; returns the run id (census) or Lambda's request id (rotate)."""
    payload: dict[str, Any] = {"targets": [f"{t.bucket}/{t.prefix}" if t.prefix else t.bucket for t in targets]}
    if mode == "census":
        payload.update(mode="census", runId=run_id or new_run_id())
    response = lambda_client.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
    if int(response.get("StatusCode", 0)) != 202:
        raise ConfigError(f"the sweep {function!r} did not accept the invocation (status {response.get('StatusCode')})")
    return str(payload.get("runId") or response.get("ResponseMetadata", {}).get("RequestId", ""))


@dataclass
class Status:
    run_id: str
    listings: int = 0
    listed: int = 0
    enqueued: int = 0
    expected_partials: int = 0
    partials: int = 0
    reported: int = 0
    failed: int = 0  # objects the fleet could not read (kind failed or unreadable)
    listing_done: bool = False

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
        )


def status(s3: Any, reports: str, run_id: str) -> Status:
    folder = run_folder(reports, run_id)
    out = Status(run_id)
    sequences: list[tuple[int, bool]] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=folder.bucket, Prefix=folder.prefix):
        for item in page.get("Contents", []):
            record = json.loads(s3.get_object(Bucket=folder.bucket, Key=item["Key"])["Body"].read())
            if record.get("runId") != run_id:
                continue
            if record.get("format") == LISTING_FORMAT:
                out.listings += 1
                out.listed += int(record.get("listed", 0))
                out.enqueued += int(record.get("enqueued", 0))
                out.expected_partials += len(record.get("partials", []))
                sequences.append((int(record.get("sequence", 0)), bool(record.get("continued"))))
            elif record.get("format") == PARTIAL_FORMAT:
                out.partials += 1
                out.reported += int(record.get("keys", 0))
                kinds = record.get("census", {}).get("kinds", {})
                out.failed += int(kinds.get("failed", 0)) + int(kinds.get("unreadable", 0))
    sequences.sort()
    out.listing_done = bool(sequences) and [s for s, _ in sequences] == list(range(len(sequences)))
    out.listing_done = out.listing_done and not sequences[-1][1]
    return out


def run_fleet_start(options: argparse.Namespace) -> int:
    import boto3

    session = boto3.session.Session()
    name = sweep_function(session.client("cloudformation"), options.function, options.stack)
    run_id = start(session.client("lambda"), name, options.mode, options.targets, options.run_id)
    if options.mode == "census":
        print(f"census run {run_id} started on {name}")
        print(f"  follow it:  rewrap fleet status {run_id} --reports <ReportPrefix> --watch")
        print(f"  verdict:    rewrap census --from-reports <ReportPrefix>census/{run_id}/ --min-version N")
    else:
        print(f"rotation sweep started on {name} (request {run_id}); watch the dashboard or the rotate queue")
    return 0


def run_fleet_status(options: argparse.Namespace) -> int:
    s3 = s3_client(Settings.from_env())
    while True:
        state = status(s3, options.reports, options.run_id)
        print(state.line(), flush=True)
        if state.done or not options.watch:
            return 0 if state.done else 1
        time.sleep(options.interval)
