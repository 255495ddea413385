"""``rewrap census``: count tokens per key version and judge SAFE / NOT SAFE / UNKNOWN, directly
(one machine lists and reads the prefix) or ``--from-reports`` (merge a fleet census run's partials)."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from rewrap.app.runtime import Runtime, build_store, read_version_states
from rewrap.core.census import NOT_PROVEN_EXIT, Census, ObjectCensus
from rewrap.core.census_runs import ROTATE_MODE, merge_run, run_records
from rewrap.core.census_taker import CensusTaker, RescueList
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.reports import CENSUS_COLUMNS
from rewrap.core.sweep import probe_newest_versions
from rewrap.deadline import Deadline
from rewrap.errors import ConfigError, PermanentError, RewrapError
from rewrap_cli.common import Progress, report_file, s3_url, table
from rewrap_cli.wiring import connect


class NewestVersionUnknown(PermanentError):
    """The census was asked to judge against the key's newest version, and NCP could not say which it is."""

    code = "newest-version-unknown"


def run_census(options: argparse.Namespace) -> int:
    try:
        if options.from_reports:
            return run_census_from_reports(options)
        return _run_direct_census(options)
    except NewestVersionUnknown as unknown:
        # Never a silent "no verdict": a script that checks the exit code must not read this as SAFE.
        print(f"  UNKNOWN: {unknown}; pass --min-version N to judge against vN")
        return NOT_PROVEN_EXIT


def _newest_version(runtime: Runtime | None, key_tag: str | None) -> int:
    """The version a census without --min-version judges against: the key's newest, as NCP says now."""
    if runtime is None or not key_tag:
        raise NewestVersionUnknown("no key tag to ask NCP about (set NCP_KMS_KEY_TAG or pass --key-tag)")
    try:
        return probe_newest_versions(runtime.kms, [key_tag], Deadline(None))[key_tag]
    except RewrapError as error:
        raise NewestVersionUnknown(f"NCP did not tell key {key_tag}'s newest version ({error.reason})") from error


def _run_direct_census(options: argparse.Namespace) -> int:
    with ExitStack() as stack:
        try:
            asks_ncp = options.min_version is None
            settings, runtime, store = stack.enter_context(connect(options, kms=asks_ncp, writes=False))
        except ConfigError as error:
            if options.min_version is not None:
                raise
            raise NewestVersionUnknown(f"the key's newest version cannot be asked of NCP ({error})") from error
        report = stack.enter_context(report_file(options, CENSUS_COLUMNS))
        target: SweepTarget = options.target
        judged = options.key_tag or settings.key_tag or None
        min_version = options.min_version or _newest_version(runtime, judged)
        if options.min_version is None:
            print(f"judging against v{min_version}, key {judged}'s newest version (asked NCP)", file=sys.stderr)
        census = Census(
            min_version=min_version,
            key_tag=judged,
            exclude_prefixes=tuple(options.exclude_prefix),
            exclude_suffixes=tuple(options.exclude_suffix),
        )
        taker = CensusTaker(store, default_key_tag=settings.key_tag, concurrency=settings.concurrency)
        progress = Progress(sys.stderr, enabled=not options.quiet)
        # objects on a disabled version, where NCP tells the states (not with --local: a fresh key)
        rescue = RescueList({} if options.local else read_version_states(settings, [judged] if judged else []))

        def seen(item: ObjectCensus) -> None:
            rescue(item)
            if report is not None:
                report.write(item.to_dict())
            progress.update(census.objects, lambda: f"{census.stale_tokens:,} tokens older than the minimum")

        taker.run(target.bucket, target.prefix, census, versions=options.versions, on_object=seen)
        elapsed = progress.finish()
        judgement = census.judge()
        if report is not None:
            report.write({"record": "verdict", "kind": "verdict", "reason": judgement.lines[0], **judgement.to_dict()})
    _print_census(options, census, elapsed)
    _print_rescue(rescue)
    return judgement.exit_code


def run_census_from_reports(options: argparse.Namespace) -> int:
    """Merge the partials of a fleet census run (``rewrap census --from-reports s3://…/census/<runId>/``)."""
    if options.local:
        raise ConfigError("--from-reports reads a deployed run's partials; it cannot be combined with --local")
    target: SweepTarget = options.target
    if not target.prefix.rstrip("/").rpartition("/")[2]:
        raise ConfigError("--from-reports needs the run's folder: s3://bucket/prefix/census/<runId>/")
    settings = Settings.from_env()
    store = build_store(settings)
    folder = SweepTarget(target.bucket, target.prefix.rstrip("/") + "/")
    started = time.monotonic()
    judged = options.key_tag or settings.key_tag or None
    records = list(run_records(store, folder))
    run = merge_run(records, s3_url(target), options.min_version, judged)
    if options.min_version is None:
        # Judged against the key's newest version as the run's sweep saw it (its listing records tell it).
        seen = run.newest_versions.get(judged or "", set())
        if len(seen) != 1:
            why = "the run recorded none" if not seen else f"the run saw several: {sorted(seen)}"
            raise NewestVersionUnknown(
                f"the newest version of key {judged} during run {run.run_id} is not known ({why})"
            )
        run = merge_run(records, s3_url(target), seen.pop(), judged)
    code, verdict = run.judge_lines()
    census = run.census
    kind = "rotation run" if run.mode == ROTATE_MODE else "census run"
    print(
        f"{kind} {run.run_id} ({s3_url(target)}): {run.partials:,} partials from {run.listings:,} sweep "
        f"listing records merged in {time.monotonic() - started:.1f} s; {census.objects:,} objects, "
        f"{census.bytes_read / 1048576:,.1f} MiB read by the fleet"
    )
    print_census_tables(census)
    if run.mode == ROTATE_MODE:  # what the rotation did; the tables are what it left
        for line in run.rotation.lines():
            print(line)
    for line in verdict:
        print(line if line.startswith(" ") else f"  {line}")
    if options.report is not None:
        with report_file(options, CENSUS_COLUMNS) as report:
            if report is not None:
                report.write({"record": "verdict", "kind": "verdict", "reason": verdict[0], "exitCode": code})
    return code


def _print_census(options: argparse.Namespace, census: Census, elapsed: float) -> None:
    scope = " (current and noncurrent versions)" if options.versions else ""
    print(
        f"census of {s3_url(options.target)}{scope}: {census.objects:,} objects, "
        f"{census.bytes_read / 1048576:,.1f} MiB read in {elapsed:.1f} s"
    )
    print_census_tables(census)
    # The verdict comes last: it is the line an operator acts on.
    for line in census.judge().lines:
        print(line if line.startswith(" ") else f"  {line}")


def _print_rescue(rescue: RescueList) -> None:
    """The rescue list: objects holding tokens on a disabled version, and the fix."""
    if not rescue.objects:
        return
    print(
        f"  rescue list: {len(rescue.objects):,} objects hold tokens on a disabled version; they cannot be decrypted "
        "or rotated until it is enabled again (`rewrap retire --undo --version N`), then rotate them:"
    )
    for item in rescue.objects[:20]:
        disabled = [v for v in item.versions if rescue.states.get(item.key_tag, {}).get(v, "enabled") != "enabled"]
        print(f"    {item.ref}: " + ", ".join(f"v{v} ({item.versions[v]} tokens)" for v in sorted(disabled)))
    if len(rescue.objects) > 20:
        print(f"    … and {len(rescue.objects) - 20:,} more")


def print_census_tables(census: Census) -> None:
    rows = [
        (tag, f"v{version}", f"{c.tokens:,}", f"{c.objects:,}", f"{c.noncurrent_objects:,}")
        for tag, versions in sorted(census.by_key.items())
        for version, c in sorted(versions.items())
    ]
    table(("key tag", "version", "tokens", "objects", "noncurrent"), rows or [("—", "—", "0", "0", "0")])
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(census.kinds.items()))
    print(f"  objects by kind: {kinds or 'none'}; noncurrent versions {census.noncurrent_objects:,}")
    if census.stale_noncurrent_objects:
        print(
            f"  {census.stale_noncurrent_objects:,} objects with older tokens are noncurrent versions, which cannot be "
            "rotated (S3 versions are immutable): expire them (lifecycle NoncurrentVersionExpiration) or delete them"
        )
    if census.stale_examples:
        print("  objects with older tokens (first few):")
    for item in census.stale_examples:
        assert census.min_version is not None
        versions = ", ".join(f"v{v}: {n} tokens" for v, n in sorted(item.versions.items()) if v < census.min_version)
        print(f"    {item.ref}{' (noncurrent)' if item.noncurrent else ''}: {versions}")
    if census.stale_objects > len(census.stale_examples):
        print(f"    … and {census.stale_objects - len(census.stale_examples):,} more (see --report)")
