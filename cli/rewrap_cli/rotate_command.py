"""``rewrap rotate``: the Lambda's engine from a laptop or CI job, on batches of listed keys."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field

from rewrap.core.config import SweepTarget
from rewrap.core.engine import UNSEEN, ObjectResult, Status
from rewrap.core.ports import ObjectRef
from rewrap.core.reports import ROTATE_COLUMNS
from rewrap.core.service import summarize
from rewrap.core.sweep import probe_newest_versions
from rewrap.deadline import Deadline
from rewrap.errors import RewrapError
from rewrap_cli.common import NOTHING_DONE, OK, PARTIAL, Progress, explain, report_file, s3_url, table
from rewrap_cli.wiring import connect

# Objects handed to the engine at once: enough to batch KMS requests well, small enough to report often.
BATCH_OBJECTS = 250
# Example objects listed per status in the rotate summary.
EXAMPLES = 10


@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)  # summarize() fields, summed over batches
    tokens: Counter[str] = field(default_factory=Counter)  # tokens per status
    before: Counter[int] = field(default_factory=Counter)  # objects per key version
    after: Counter[int] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # opaque, unreadable, failed: the first few
    excluded: int = 0

    def add(self, results: list[ObjectResult]) -> None:
        self.counts.update(summarize(results))
        for result in results:
            if result.status in (*UNSEEN, Status.FAILED):
                shown = self.examples.setdefault(str(result.status), [])
                reason = result.error.reason if result.error is not None else result.reason
                if len(shown) < EXAMPLES:
                    shown.append(f"{result.ref}: {reason}")
            self.tokens[str(result.status)] += result.tokens
            self.before.update(result.old_versions)
            if result.status in (Status.ROTATED, Status.WOULD_ROTATE) and result.new_version is not None:
                self.after[result.new_version] += 1
            else:
                self.after.update(result.old_versions)

    def line(self) -> str:
        shown = (str(s) for s in Status if self.counts[str(s)])
        return ", ".join(f"{s} {self.counts[s]:,}" for s in shown) or "listing"


def run_rotate(options: argparse.Namespace) -> int:
    with connect(options, kms=True) as (settings, runtime, store), report_file(options, ROTATE_COLUMNS) as report:
        assert runtime is not None
        target: SweepTarget = options.target
        newest = probe_newest_versions(runtime.kms, [settings.key_tag], Deadline(None))
        for key_tag, version in newest.items():
            runtime.engine.versions.observe(key_tag, version)
        mode = " (dry run: nothing is written)" if settings.dry_run else ""
        print(f"rotating {s3_url(target)} to key {settings.key_tag} v{newest[settings.key_tag]}{mode}", file=sys.stderr)
        tally = _Tally()
        progress = Progress(sys.stderr, enabled=not options.quiet)
        listing_error: RewrapError | None = None
        token: str | None = None
        while True:
            try:
                page, token = store.list_page(target.bucket, target.prefix, token)
            except RewrapError as error:
                if not tally.counts["total"]:
                    raise
                listing_error = error
                break
            kept = [item for item in page if not _excluded(options, item.key)]
            tally.excluded += len(page) - len(kept)
            for start in range(0, len(kept), BATCH_OBJECTS):
                refs = [ObjectRef(target.bucket, item.key) for item in kept[start : start + BATCH_OBJECTS]]
                results = runtime.engine.rotate(refs, dry_run=settings.dry_run)
                tally.add(results)
                if report is not None:
                    for result in results:
                        report.write(result.to_dict())
                progress.update(tally.counts["total"], tally.line)
            if token is None:
                break
        elapsed = progress.finish()
    _print_rotate(options, tally, runtime.kms.stats.snapshot(), elapsed, settings.dry_run)
    total, failed = tally.counts["total"], tally.counts[str(Status.FAILED)]
    unseen = sum(tally.counts[str(s)] for s in UNSEEN)
    if listing_error is not None:
        print(f"rewrap: listing stopped early: {explain(listing_error)}", file=sys.stderr)
        return PARTIAL
    if total and failed == total:
        return NOTHING_DONE
    return PARTIAL if failed or unseen else OK


def _excluded(options: argparse.Namespace, key: str) -> bool:
    return key.startswith(tuple(options.exclude_prefix)) or key.endswith(tuple(options.exclude_suffix))


def _print_rotate(options: argparse.Namespace, tally: _Tally, kms: dict[str, int], elapsed: float, dry: bool) -> None:
    total = tally.counts["total"]
    rate = total / max(elapsed, 1e-9)
    print(f"rotate {s3_url(options.target)}: {total:,} objects in {elapsed:.1f} s ({rate:,.0f}/s)")
    always = (
        {Status.ROTATED, Status.CURRENT, Status.FAILED}
        if not dry
        else {Status.WOULD_ROTATE, Status.CURRENT, Status.FAILED}
    )
    shown = [s for s in Status if s in always or tally.counts[str(s)]]
    rows = [(str(s), f"{tally.counts[str(s)]:,}", f"{tally.tokens[str(s)]:,}") for s in shown]
    rows += [
        ("  retryable", f"{tally.counts['retryable']:,}", ""),
        ("  permanent", f"{tally.counts['permanent']:,}", ""),
    ]
    table(("status", "objects", "tokens"), rows)

    def spread(counter: Counter[int]) -> str:
        return ", ".join(f"v{v}: {n:,}" for v, n in sorted(counter.items())) or "—"

    after = "after (would be)" if dry else "after"
    print(f"  objects per key version: before {spread(tally.before)} → {after} {spread(tally.after)}")
    print(f"  NCP KMS: {kms['requests']:,} requests, {kms['retries']:,} retries")
    if tally.excluded:
        print(f"  excluded by the operator, not read: {tally.excluded:,} objects")
    for status in (*UNSEEN, Status.FAILED):
        examples = tally.examples.get(str(status), [])
        if examples:
            what = {
                Status.OPAQUE: "opaque (could hold tokens rewrap cannot read; handle them by hand)",
                Status.UNREADABLE: "unreadable (restore, grant access or decrypt them, then run again)",
                Status.FAILED: "failed",
            }[status]
            print(f"  {what}:")
            print("\n".join(f"    {line}" for line in examples))
            if tally.counts[str(status)] > len(examples):
                print(f"    … and {tally.counts[str(status)] - len(examples):,} more (see --report)")
