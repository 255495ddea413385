"""The ``rewrap`` argument parser: every command and its options, in one place."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rewrap_cli.batch_job import run_batch_job
from rewrap_cli.census_command import run_census
from rewrap_cli.common import positive, s3_target
from rewrap_cli.fleet import run_fleet_start, run_fleet_status
from rewrap_cli.plan import Fleet, Prices
from rewrap_cli.plan_command import run_plan
from rewrap_cli.plan_steady import Schedule
from rewrap_cli.retire_command import add_parsers as add_retire_parsers
from rewrap_cli.rotate_command import run_rotate


def build() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", metavar="s3://bucket/prefix", type=s3_target)
    common.add_argument("--key-tag", metavar="T", help="default NCP key tag (default: NCP_KMS_KEY_TAG)")
    common.add_argument("--concurrency", type=positive, metavar="N", help="parallel S3/KMS requests")
    common.add_argument("--report", type=Path, metavar="FILE", help="one line per object")
    common.add_argument("--format", choices=("json", "csv"), help="report format (default: by FILE suffix, json)")
    common.add_argument("--local", action="store_true", help="use the embedded stack (moto + emulator, loopback)")
    common.add_argument(
        "--exclude-prefix",
        action="append",
        default=[],
        metavar="P",
        help="skip keys starting with P (from the bucket root; repeatable); the census verdict names it",
    )
    common.add_argument(
        "--exclude-suffix",
        action="append",
        default=[],
        metavar="S",
        help="skip keys ending with S, e.g. .jpg (repeatable); the census verdict names it",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")

    parser = argparse.ArgumentParser(
        prog="rewrap",
        description="Operator tools for rewrap: from a rotated NCP KMS key to a disabled old version.",
        epilog="Exit codes: 0 done (census: SAFE), 1 partly (census: NOT SAFE or UNKNOWN), 2 nothing could be done.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    census = commands.add_parser(
        "census", parents=[common], help="count tokens and objects per key version (read only)"
    )
    census.add_argument("--versions", action="store_true", help="include noncurrent object versions")
    census.add_argument(
        "--min-version",
        type=positive,
        metavar="N",
        help="verdict: SAFE (exit 0) only if proven nothing is older than vN (default: the key's newest, from NCP)",
    )
    census.add_argument(
        "--from-reports",
        action="store_true",
        help="merge a fleet census run's partials instead: the target is s3://…/census/<runId>/",
    )
    census.set_defaults(run=run_census)
    rotate = commands.add_parser("rotate", parents=[common], help="re-wrap every token to the newest key version")
    rotate.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    rotate.add_argument("--rate", type=float, metavar="R", help="NCP KMS requests per second (0 = unlimited)")
    rotate.set_defaults(run=run_rotate)
    add_retire_parsers(commands)
    _plan_parser(commands)
    _fleet_parser(commands)
    _batch_job_parser(commands)
    commands.add_parser("emulator", help="run the local NCP KMS emulator (rewrap emulator --help)")
    commands.add_parser("demo", help="rotate a seeded bucket end to end on the embedded stack")
    return parser


def _plan_parser(commands: Any) -> None:
    defaults, prices = Fleet(), Prices()
    plan = commands.add_parser(
        "plan",
        help="what a rotation will take, and the scheduled sweep a day after it: requests, hours and cost",
        epilog="Prices default to AWS us-east-1 list prices (arm64 Lambda); NCP KMS is not priced unless given.",
    )
    plan.add_argument("target", metavar="s3://bucket/prefix", type=s3_target)
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--census-report", type=Path, metavar="FILE", help="rewrap census --report FILE (json/csv)")
    source.add_argument("--inventory", type=Path, metavar="FILE", help="an S3 Inventory CSV data file")
    source.add_argument("--objects", type=positive, metavar="N", help="N text objects (--tokens-per-object), all old")
    plan.add_argument("--min-version", type=positive, metavar="N", help="census report: rotate what is older than vN")
    plan.add_argument(
        "--tokens-per-object", type=int, default=1, metavar="N", help="inventory, --objects: assumed (default 1)"
    )
    steady = Schedule()
    plan.add_argument("--sweeps-per-day", type=float, default=steady.sweeps_per_day, help="the schedule (1)")
    plan.add_argument(
        "--full-every-days", type=float, default=steady.full_every_days, help="REWRAP_SWEEP_FULL_EVERY_DAYS (7)"
    )
    plan.add_argument("--changed-per-day", type=int, metavar="N", help="objects modified a day (0.1%% of them)")
    plan.add_argument("--keys-per-message", type=positive, default=steady.keys_per_message, help="sweep's (10)")
    plan.add_argument("--seconds-per-page", type=float, default=steady.seconds_per_page, help="a LIST (0.1)")
    plan.add_argument("--kms-rate", type=float, default=defaults.kms_rate, help="NCP requests/s for the fleet (200)")
    plan.add_argument("--containers", type=positive, default=defaults.containers, help="rotate containers at once (6)")
    plan.add_argument("--memory-gb", type=float, default=defaults.memory_gb, help="rotate function memory (1.0)")
    plan.add_argument(
        "--cpu-ms-per-object",
        type=float,
        default=defaults.cpu_ms_per_object,
        help=f"rewrap CPU per rotated object ({defaults.cpu_ms_per_object:g}, measured by make bench-path)",
    )
    plan.add_argument("--s3-latency-ms", type=float, default=defaults.s3_latency_ms, help="S3 round trip (30)")
    plan.add_argument("--acls", action="store_true", help="the bucket's ACLs apply (not BucketOwnerEnforced)")
    plan.add_argument("--prefixes", type=positive, default=defaults.prefixes, help="S3 prefixes the keys spread over")
    plan.add_argument("--tokens-per-kms-request", type=positive, default=defaults.tokens_per_kms_request)
    for name, value in prices.__dict__.items():
        plan.add_argument(
            f"--price-{name.replace('_', '-')}", type=float, default=value, help=f"USD (default {value:g})"
        )
    plan.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    plan.set_defaults(run=run_plan)


def _fleet_parser(commands: Any) -> None:
    parser = commands.add_parser("fleet", help="start a census or rotation run on the deployed sweep; follow it")
    actions = parser.add_subparsers(title="actions", required=True, metavar="ACTION")
    for mode in ("census", "rotate"):
        start = actions.add_parser(mode, help=f"invoke the deployed sweep in {mode} mode")
        start.add_argument("targets", metavar="s3://bucket/prefix", type=s3_target, nargs="+")
        where = start.add_mutually_exclusive_group(required=True)
        where.add_argument("--function", metavar="NAME", help="the sweep function's name or ARN")
        where.add_argument("--stack", metavar="NAME", help="the deployed stack (its SweepFunction)")
        start.add_argument("--run-id", metavar="ID", help="the run id (default: time and a random part)")
        if mode == "rotate":
            start.add_argument(
                "--incremental",
                action="store_true",
                help="enqueue only objects modified since each target's checkpoint (default: full)",
            )
        start.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
        start.set_defaults(run=run_fleet_start, mode=mode)
    state = actions.add_parser("status", help="keys listed, enqueued, reported and failed of a census or rotation run")
    state.add_argument("run_id", metavar="RUN_ID")
    state.add_argument("--reports", required=True, metavar="s3://bucket/prefix", help="the stack's ReportPrefix")
    state.add_argument("--watch", action="store_true", help="refresh every --interval seconds until done")
    state.add_argument("--interval", type=float, default=10.0, metavar="S")
    state.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    state.set_defaults(run=run_fleet_status)


def _batch_job_parser(commands: Any) -> None:
    job = commands.add_parser(
        "batch-job",
        help="create the S3 Batch Operations job that runs the rotate function over a manifest",
        epilog="The job waits for confirmation (aws s3control update-job-status … Ready) unless --yes or --no-confirm.",
    )
    job.add_argument("mode", metavar="census|rotate", help="census: count, never write; rotate: re-wrap")
    job.add_argument(
        "--manifest",
        required=True,
        metavar="s3://bucket/key",
        help="an S3 Inventory manifest.json (CSV inventory) or a CSV of Bucket,Key[,VersionId] lines",
    )
    job.add_argument("--report", required=True, metavar="s3://bucket/prefix", help="the completion report (all tasks)")
    job.add_argument("--stack", metavar="NAME", help="the deployed stack: its Batch Operations role and rotate version")
    job.add_argument("--role-arn", metavar="ARN", help="the role Batch Operations assumes (default: the stack's)")
    job.add_argument(
        "--function-arn", metavar="ARN", help="a published version or alias of the rotate function (default: stack's)"
    )
    job.add_argument("--account-id", metavar="ID", help="the job's account (default: your identity's, from STS)")
    job.add_argument("--priority", type=int, default=10, metavar="N", help="job priority (default 10; higher first)")
    job.add_argument("--description", metavar="TEXT", help="the job's description (default: mode and manifest)")
    job.add_argument(
        "--confirm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create the job waiting for confirmation (default) or --no-confirm: run it at once",
    )
    job.add_argument("--yes", dest="confirm", action="store_false", help="the same as --no-confirm")
    job.add_argument("--dry-run", action="store_true", help="rotate: each task says what would change, writes nothing")
    job.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    job.set_defaults(run=run_batch_job)
