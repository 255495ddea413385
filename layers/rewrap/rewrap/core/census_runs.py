"""Runs on the fleet: one partial per request under ``<REWRAP_REPORT_PREFIX>census/<runId>/``, the sweep's
listing records beside them, and the merge of a run's partials into one verdict.

A census request is a rotate request with ``"mode": "census"`` and a ``runId`` (the sweep sends them
in census mode; S3 Batch Operations jobs pass ``userArguments: {"mode": "census"}``). It is answered
with the census's scanner and never writes an object. A rotation run's requests carry a ``runId`` too:
each writes a partial with the census of its objects as the rotation left them and what the rotation
did (``rotation_runs``), so a full rotation run proves itself the same way. Each partial is named by a
digest of the request's bucket and keys, so a redelivered message lands on the partial already written
instead of being counted twice, and the sweep can name, in its listing record, every partial it expects.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rewrap.core.census import MAX_UNKNOWN_EXAMPLES, Census, CensusKind, ObjectCensus
from rewrap.core.census_taker import CensusTaker
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import SINGLE_READ_BYTES, ObjectRef, ObjectStore
from rewrap.errors import BucketNotAllowedError, ConfigError, ObjectChangedError, RewrapError

PARTIAL_FORMAT = "rewrap-census-partial/1"
LISTING_FORMAT = "rewrap-census-listing/1"
VERDICT_FORMAT = "rewrap-run-verdict/1"  # a judged rotation run's published verdict (``run_verdicts``)
CENSUS_FOLDER = "census"
ROTATE_MODE = "rotate"


def run_folder(report_prefix: str, run_id: str) -> SweepTarget:
    """Where a run's partials go: ``<REWRAP_REPORT_PREFIX>census/<runId>/``."""
    if not report_prefix.startswith("s3://"):
        raise ConfigError("a census run needs REWRAP_REPORT_PREFIX (s3://bucket/prefix) to write its partials to")
    location = SweepTarget.parse(report_prefix)
    folder = location.prefix.strip("/")
    inner = f"{CENSUS_FOLDER}/{run_id}/"
    return SweepTarget(location.bucket, f"{folder}/{inner}" if folder else inner)


def partial_name(bucket: str, keys: Iterable[str]) -> str:
    digest = hashlib.sha256(json.dumps([bucket, list(keys)], ensure_ascii=False).encode()).hexdigest()
    return f"part-{digest[:32]}.json"


def _ref_text(ref: ObjectRef) -> str:
    return f"{ref.key}?versionId={ref.version_id}" if ref.version_id else ref.key


@dataclass
class CensusAnswer:
    """One census request's answer: its objects and where its partial went (None: not written)."""

    run_id: str
    refs: list[ObjectRef]
    items: list[ObjectCensus] = field(default_factory=list)
    error: RewrapError | None = None  # the request itself was refused or must be retried
    partial: str | None = None

    @property
    def census(self) -> Census:
        census = Census()
        for item in self.items:
            census.add(item)
        return census


def answer(run_id: str, refs: Sequence[ObjectRef], settings: Settings, store: ObjectStore, source: str) -> CensusAnswer:
    """Scan ``refs`` (all in one bucket) and write their partial; writes nothing else, reads only."""
    result = CensusAnswer(run_id, list(refs))
    refused = sorted({ref.bucket for ref in refs if not settings.bucket_allowed(ref.bucket)})
    if refused:
        result.error = BucketNotAllowedError(f"bucket {refused[0]!r} is not in REWRAP_BUCKETS")
        return result
    taker = CensusTaker(store, default_key_tag=settings.key_tag, concurrency=settings.concurrency)
    workers = max(1, min(settings.concurrency, len(refs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="census") as pool:
        result.items = list(pool.map(taker.inspect_ref, refs))
    retryable = [item.error for item in result.items if item.error is not None and item.error.retryable]
    if retryable:  # retried as a whole: its partial is written once every object could be counted
        result.error = retryable[0]
        return result
    if settings.report_prefix:
        result.partial = write_partial(settings, store, run_id, result.refs, result.census, source)
    return result


def write_partial(
    settings: Settings,
    store: ObjectStore,
    run_id: str,
    refs: Sequence[ObjectRef],
    census: Census,
    source: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """The partial of one request (``refs``, all in one bucket): its objects' census, and ``extra``."""
    folder = run_folder(settings.report_prefix, run_id)
    bucket = refs[0].bucket
    key = folder.prefix + partial_name(bucket, [_ref_text(ref) for ref in refs])
    record = {
        "format": PARTIAL_FORMAT,
        "runId": run_id,
        "source": source,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "bucket": bucket,
        "keys": len(refs),
        "census": census.to_partial(),
        **(extra or {}),
    }
    with suppress(ObjectChangedError):  # a redelivered request: the first delivery's partial stands
        store.put_new(folder.bucket, key, json.dumps(record).encode(), "application/json")
    return f"s3://{folder.bucket}/{key}"


def result_string(item: ObjectCensus) -> str:
    """A Batch Operations task's result: the object's kind, key tag and versions, so the job's
    completion report is itself a census."""
    versions = ",".join(f"v{v}={n}" for v, n in sorted(item.versions.items()))
    text = f"census {item.kind} key={item.key_tag or '-'} versions={versions or '-'}"
    if item.malformed:
        text += f" malformed={item.malformed}"
    if item.kind in (CensusKind.OPAQUE, CensusKind.UNREADABLE, CensusKind.FAILED):
        text += f" reason={item.reason or (item.error.reason if item.error else item.kind)}"
    return text


# --- the sweep's listing record ---------------------------------------------------------------------
def write_listing(
    settings: Settings, store: ObjectStore, run_id: str, sequence: int, record: dict[str, Any], partials: list[str]
) -> None:
    """What one sweep invocation listed and enqueued, and the partials it expects back."""
    folder = run_folder(settings.report_prefix, run_id)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    body = {"format": LISTING_FORMAT, "runId": run_id, "sequence": sequence, "time": when, **record}
    body["partials"] = partials
    key = f"{folder.prefix}listing-{sequence:06d}.json"
    store.put_new(folder.bucket, key, json.dumps(body).encode(), "application/json")


# --- merging a run --------------------------------------------------------------------------------
def run_records(store: ObjectStore, folder: SweepTarget) -> Iterator[tuple[str, bytes]]:
    """Every object of a run folder as (name within the folder, body), listed page by page."""
    token: str | None = None
    while True:
        items, token = store.list_page(folder.bucket, folder.prefix, token)
        for item in items:
            ref = ObjectRef(folder.bucket, item.key)
            read = store.read_small(ref, SINGLE_READ_BYTES)  # a partial or listing record: one GET
            if read is None:  # deleted since the listing
                continue
            head, body = read
            body = body if body is not None else store.get_body(ref, head)  # larger than one read
            if body is not None:
                yield item.key[len(folder.prefix) :], body.data
        if token is None:
            return


@dataclass
class RotationTally:
    """What a rotation run's requests did, summed from their partials: objects per result status, the
    versions the objects held before the rotation (key tag → version → objects) and the objects that
    failed, with their reasons (the first few)."""

    statuses: Counter[str] = field(default_factory=Counter)
    found: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        found = {tag: {str(v): n for v, n in sorted(versions.items())} for tag, versions in self.found.items()}
        return {"statuses": dict(self.statuses), "found": found, "failures": self.failures}

    def merge(self, section: dict[str, Any]) -> None:
        self.statuses.update({str(status): int(n) for status, n in section.get("statuses", {}).items()})
        for tag, versions in section.get("found", {}).items():
            self.found.setdefault(tag, Counter()).update({int(v): int(n) for v, n in versions.items()})
        self.failures += section.get("failures", [])[: max(0, MAX_UNKNOWN_EXAMPLES - len(self.failures))]

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{status} {n:,}" for status, n in sorted(self.statuses.items())) or "none"
        found = "; ".join(
            f"{tag}: " + ", ".join(f"v{v} {n:,}" for v, n in sorted(versions.items()))
            for tag, versions in sorted(self.found.items())
        )
        lines = [f"  rotation: {statuses}", f"  objects by the versions they held before: {found or 'none'}"]
        if self.failures:
            lines.append(f"  failed ({self.statuses['failed']:,}), with their reasons:")
            lines += [f"    {failure}" for failure in self.failures]
        return lines


@dataclass
class RunMerge:
    census: Census
    run_id: str
    mode: str = "census"  # or ROTATE_MODE: a rotation run's listing records say so
    rotation: RotationTally = field(default_factory=RotationTally)
    archived: int = 0  # a rotation sweep lists archived objects but does not enqueue them: unreadable
    unchanged: int = 0  # an incremental rotation sweep listed these but did not enqueue them
    partials: int = 0
    listings: int = 0
    listed: int = 0
    enqueued: int = 0
    accounted: int = 0
    expected_partials: int = 0  # named by the listing records read so far
    listing_done: bool = False  # every hand-over's listing record is there and the last one finished
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the run is not known to be complete
    times: list[str] = field(default_factory=list)  # ISO times of the run's records (partials and listings)
    newest_versions: dict[str, set[int]] = field(default_factory=dict)  # per key tag, as the sweep saw it

    @property
    def complete(self) -> bool:
        return not (self.problems or self.missing or self.foreign)

    def judge_lines(self) -> tuple[int, list[str]]:
        """The census verdict, made UNKNOWN (exit 1 at least) by an incomplete or mixed run."""
        judgement = self.census.judge()
        lines = list(judgement.lines)
        code = judgement.exit_code
        counts = f"{self.accounted:,} of {self.enqueued:,} enqueued keys reported"
        if self.complete:
            lines.append(f"  run {self.run_id} complete: {counts}")
            return code, lines
        if judgement.verdict == "SAFE":
            lines[0] = "UNKNOWN: cannot prove it: the run is incomplete or mixed (below); what was merged is clean"
        code = 1  # incomplete or mixed: named below, whatever the partials at hand say
        lines.append(f"  run {self.run_id} NOT complete: {counts}")
        lines += [f"    {problem}" for problem in self.problems]
        lines += [f"    missing partial: {name}" for name in self.missing[:20]]
        if len(self.missing) > 20:
            lines.append(f"    … and {len(self.missing) - 20:,} more missing")
        lines += [f"    foreign partial: {name}" for name in self.foreign[:20]]
        return code, lines


def merge_run(
    records: Iterable[tuple[str, bytes]], run_folder_url: str, min_version: int | None, key_tag: str | None
) -> RunMerge:
    """Merge the objects of a run folder (name, body) into one census and check the run is whole."""
    run_id = run_folder_url.rstrip("/").rpartition("/")[2]
    merged = RunMerge(Census(min_version=min_version, key_tag=key_tag, where=f"census run {run_id}"), run_id)
    expected: set[str] = set()
    found: set[str] = set()
    sequences: list[tuple[int, bool]] = []
    versioning: dict[str, str | None] = {}
    for name, body in records:
        try:
            record = json.loads(body)
        except ValueError:
            merged.foreign.append(f"{name} (not JSON)")
            continue
        if isinstance(record, dict) and record.get("format") == VERDICT_FORMAT:
            continue  # what was published about this run, not part of it
        if not isinstance(record, dict) or record.get("format") not in (PARTIAL_FORMAT, LISTING_FORMAT):
            merged.foreign.append(f"{name} (not a census partial)")
            continue
        if record.get("runId") != run_id:
            merged.foreign.append(f"{name} (run {record.get('runId')!r})")
            continue
        if isinstance(record.get("time"), str):
            merged.times.append(record["time"])
        if record["format"] == LISTING_FORMAT:
            for tag, version in (record.get("newestVersions") or {}).items():
                merged.newest_versions.setdefault(tag, set()).add(int(version))
            merged.listings += 1
            merged.listed += int(record.get("listed", 0))
            merged.enqueued += int(record.get("enqueued", 0))
            expected.update(record.get("partials", []))
            sequences.append((int(record.get("sequence", 0)), bool(record.get("continued"))))
            versioning.update(record.get("versioning", {}))
            if record.get("mode") == ROTATE_MODE:
                _rotation_listing(merged, record)
            continue
        found.add(name)
        merged.partials += 1
        merged.accounted += int(record.get("keys", 0))
        merged.census.merge_partial(record.get("census", {}))
        if isinstance(record.get("rotation"), dict):
            merged.rotation.merge(record["rotation"])
    merged.census.versioning = _worst_versioning(versioning.values()) if versioning else ""
    if merged.mode == ROTATE_MODE:
        merged.census.where = f"rotation run {run_id}"
    merged.expected_partials = len(expected)
    _check_whole(merged, expected, found, sequences)
    return merged


def _check_whole(merged: RunMerge, expected: set[str], found: set[str], sequences: list[tuple[int, bool]]) -> None:
    """Why the merged run may not be whole: its listing unfinished, partials missing or foreign, objects
    listed but not looked at."""
    if not sequences:
        merged.problems.append("no sweep listing record in the run: the keys that should be reported are not known")
        return
    merged.listing_done = listing_finished(sequences)
    if not merged.listing_done:
        merged.problems.append("the sweep's listing is not finished (a hand-over's listing record is missing)")
    merged.missing = sorted(expected - found)
    merged.foreign += sorted(f"{name} (not enqueued by this run's sweep)" for name in found - expected)
    if merged.unchanged:
        merged.problems.append(
            f"an incremental run: {merged.unchanged:,} listed objects, unchanged since the last listing, were not "
            f"looked at ({merged.enqueued:,} were); only a full run can prove SAFE"
        )
    skipped = merged.listed - merged.enqueued - merged.archived - merged.unchanged
    if skipped > 0:
        merged.problems.append(f"{skipped:,} listed objects were skipped by the sweep's filters, not read")
    if not merged.missing and merged.accounted != merged.enqueued:
        merged.problems.append(f"{merged.accounted:,} keys reported, {merged.enqueued:,} enqueued")


def listing_finished(sequences: Iterable[tuple[int, bool]]) -> bool:
    """Every invocation's listing record is there, (sequence, continued) each, and the last did not hand over."""
    ordered = sorted(sequences)
    return bool(ordered) and [s for s, _ in ordered] == list(range(len(ordered))) and not ordered[-1][1]


def _rotation_listing(merged: RunMerge, record: dict[str, Any]) -> None:
    """A rotation sweep's listing record: archived objects it listed but did not enqueue count as unreadable
    (as a census counts them), and what an incremental run left out is remembered."""
    merged.mode = ROTATE_MODE
    archived = int(record.get("archived", 0))
    merged.archived += archived
    merged.unchanged += int(record.get("unchanged", 0))
    if not archived:
        return
    census = merged.census
    census.kinds[CensusKind.UNREADABLE] += archived
    census.unknown["unreadable"] += archived
    examples = census.unknown_examples.setdefault("unreadable", [])
    examples += record.get("archivedExamples", [])[: max(0, MAX_UNKNOWN_EXAMPLES - len(examples))]


def _worst_versioning(statuses: Iterable[str | None]) -> str | None:
    """The versioning the verdict must answer for: unknown beats enabled beats never enabled."""
    values = list(statuses)
    if None in values:
        return None
    return next((v for v in values if v), "")
