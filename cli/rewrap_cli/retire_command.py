"""``rewrap retire``: disable a key's old versions once a fresh SAFE verdict proves nothing needs them,
``rewrap retire --undo``: enable them again, ``rewrap retire status``: watch what a retirement did.

The verdict is a census of the named targets taken now, or the merged partials of fleet census runs
(``--from-reports``). What it refuses, and the evidence it writes, are the use case's
(:mod:`rewrap.core.retire`); this module reads the options, prints and asks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rewrap.app.runtime import RetireTools, build_retire_tools
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import KeyState
from rewrap.core.retire import FAILED, RetireRequest, Verdicts, retire, undo
from rewrap.core.retire_evidence import evidence_folder
from rewrap.core.retire_status import gather_signs, retired_versions, retirement_records, status_lines
from rewrap.core.retire_verdict import Verdict, census_verdict, run_verdict
from rewrap.errors import ConfigError
from rewrap_cli.census_command import print_census_tables

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|min|m|h|d)")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400}


def duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d``, ``3600s``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30min, 24h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def run_retire(options: argparse.Namespace) -> int:
    tools = _tools(options)
    try:
        request = RetireRequest(
            key_tag=tools.settings.key_tag,
            versions=tuple(options.version),
            below=options.below,
            max_age=options.max_age,
            dry_run=options.dry_run,
            undo=options.undo,
        )
        if not options.dry_run:
            evidence_folder(tools.report_prefix, request.key_tag)  # nowhere to write evidence: stop before anything
        print(f"key {request.key_tag}: {tools.keys.describe(request.key_tag)}", file=sys.stderr)
        if options.undo:
            outcome = undo(request, tools, _confirm(options), _last_retired(tools, request.key_tag))
        else:
            if not (options.targets or options.from_reports):
                raise ConfigError("name what the verdict covers: s3://bucket/prefix targets or --from-reports runs")
            outcome = retire(request, tools, _verdicts(options, tools), _confirm(options))
    finally:
        tools.close()
    for line in outcome.lines:
        print(line, file=sys.stderr if outcome.exit_code == FAILED else sys.stdout)
    return outcome.exit_code


def run_retire_status(options: argparse.Namespace) -> int:
    tools = _tools(options)
    try:
        key_tag = tools.settings.key_tag
        records = retirement_records(tools.store, tools.report_prefix, key_tag)
        retired = retired_versions(records)
        state = tools.keys.state(key_tag)
        now = datetime.now(UTC)
        since = min((_disabled_at(state, item.version, item.retired_at) for item in retired), default=now)
        signs = gather_signs(tools.store, tools.keys, tools.report_prefix, key_tag, since, now)
        code, lines = status_lines(state, retired, signs, options.watch, now, key_tag)
    finally:
        tools.close()
    print("\n".join(lines))
    return code


def _disabled_at(state: KeyState, version: int, recorded: datetime) -> datetime:
    """When NCP says the version's state changed, else when the retirement was recorded."""
    found = state.versions.get(version)
    changed = found.changed_ms if found is not None else None
    return datetime.fromtimestamp(changed / 1000, UTC) if changed else recorded


def _tools(options: argparse.Namespace) -> RetireTools:
    settings = Settings.from_env()
    if options.key_tag:
        settings = replace(settings, key_tag=options.key_tag)
    if getattr(options, "concurrency", None):
        settings = replace(settings, concurrency=options.concurrency)
    if not settings.key_tag:
        raise ConfigError("NCP_KMS_KEY_TAG is not set: pass --key-tag or set the variable")
    if not settings.secret_id:
        raise ConfigError("NCP_KMS_SECRET_ID is not set: retire manages the key with the NCP secret's access key")
    reports = options.reports.rstrip("/") + "/" if options.reports else ""
    return build_retire_tools(settings, report_prefix=reports)


def _verdicts(options: argparse.Namespace, tools: RetireTools) -> Verdicts:
    def gather(state: KeyState, versions: set[int]) -> list[Verdict]:
        found = []
        names = ", ".join(f"v{v}" for v in sorted(versions))
        for target in options.targets:
            print(f"census of s3://{target.bucket}/{target.prefix} for {names}…", file=sys.stderr, flush=True)
            verdict = census_verdict(
                tools.store,
                tools.settings,
                target,
                state.key_tag,
                versions,
                state.current_version,
                scan_versions=options.noncurrent,
                exclude_prefixes=tuple(options.exclude_prefix),
                exclude_suffixes=tuple(options.exclude_suffix),
            )
            found.append(_shown(verdict))
        for folder in options.from_reports:
            run = SweepTarget(folder.bucket, folder.prefix.rstrip("/") + "/")
            print(f"merging census run s3://{run.bucket}/{run.prefix} for {names}…", file=sys.stderr, flush=True)
            found.append(_shown(run_verdict(tools.store, run, state.key_tag, versions)))
        return found

    return gather


def _shown(verdict: Verdict) -> Verdict:
    census = verdict.census
    print(f"{verdict.source}: {census.objects:,} objects, data read at {verdict.taken_at:%Y-%m-%d %H:%M:%S}Z")
    print_census_tables(census)
    for line in [*verdict.lines, *(f"note: {n}" for n in verdict.notes)]:
        print(line if line.startswith(" ") else f"  {line}")
    print(f"  for the versions to retire: {verdict.verdict}")
    return verdict


def _confirm(options: argparse.Namespace) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if options.yes:
            return True
        print(f"{question} [y/N] ", end="", flush=True)
        try:
            answer = sys.stdin.readline()
        except OSError:
            return False
        return answer.strip().lower() in ("y", "yes")

    return ask


def _last_retired(tools: RetireTools, key_tag: str) -> list[int]:
    if not tools.report_prefix:
        return []
    return [item.version for item in retired_versions(retirement_records(tools.store, tools.report_prefix, key_tag))]


def add_parsers(commands: argparse._SubParsersAction) -> None:
    from rewrap_cli.common import positive, s3_target

    retire_parser = commands.add_parser(
        "retire",
        help="disable old key versions on a fresh SAFE verdict, with evidence; --undo; `retire status`",
        epilog="Exit codes: 0 done (or nothing to do), 1 refused (the reason is printed), 2 failed. "
        "`rewrap retire status` watches a retirement: exit 0 keep, 1 undo.",
    )
    retire_parser.add_argument("targets", metavar="s3://bucket/prefix", type=s3_target, nargs="*")
    retire_parser.add_argument(
        "--from-reports",
        action="append",
        default=[],
        type=s3_target,
        metavar="s3://…/census/<runId>/",
        help="a fleet census run's folder as the verdict (repeatable)",
    )
    which = retire_parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=positive, action="append", default=[], metavar="N", help="(repeatable)")
    which.add_argument("--below", type=positive, metavar="N", help="every version older than vN")
    retire_parser.add_argument("--key-tag", metavar="T", help="the NCP key tag (default: NCP_KMS_KEY_TAG)")
    retire_parser.add_argument("--noncurrent", action="store_true", help="census noncurrent object versions too")
    retire_parser.add_argument("--exclude-prefix", action="append", default=[], metavar="P")
    retire_parser.add_argument("--exclude-suffix", action="append", default=[], metavar="S")
    retire_parser.add_argument(
        "--max-age", type=duration, default=timedelta(hours=24), metavar="D", help="verdicts older are stale (24h)"
    )
    retire_parser.add_argument(
        "--reports", metavar="s3://bucket/prefix", help="where evidence goes (default: REWRAP_REPORT_PREFIX)"
    )
    retire_parser.add_argument("--concurrency", type=positive, metavar="N", help="parallel S3 reads of the census")
    retire_parser.add_argument("--yes", action="store_true", help="do not ask before changing anything")
    retire_parser.add_argument("--dry-run", action="store_true", help="say what would happen; change and write nothing")
    retire_parser.add_argument("--undo", action="store_true", help="enable versions again (default: the last retired)")
    retire_parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    retire_parser.set_defaults(run=run_retire)

    status = commands.add_parser("retire-status")  # reached as `rewrap retire status`
    status.add_argument("--key-tag", metavar="T", help="the NCP key tag (default: NCP_KMS_KEY_TAG)")
    status.add_argument("--reports", metavar="s3://bucket/prefix", help="default: REWRAP_REPORT_PREFIX")
    status.add_argument("--watch", type=duration, default=timedelta(days=7), metavar="D", help="watch window (7d)")
    status.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    status.set_defaults(run=run_retire_status)
