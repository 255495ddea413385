"""The census on the fleet: census requests answered by the rotate function, one partial per request
under ``<REWRAP_REPORT_PREFIX>census/<runId>/``, and the merge of a run's partials into one verdict.

A census request is a rotate request with ``"mode": "census"`` and a ``runId`` (the sweep sends them
in census mode; S3 Batch Operations jobs pass ``userArguments: {"mode": "census"}``). It is answered
with the census's scanner and never writes an object. Each partial is named by a digest of the
request's bucket and keys, so a redelivered message lands on the partial already written instead
of being counted twice, and the sweep can name, in its listing record, every partial it expects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rewrap.core.census import Census, CensusKind, ObjectCensus
from rewrap.core.census_taker import CensusTaker
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import SINGLE_READ_BYTES, ObjectRef, ObjectStore
from rewrap.errors import BucketNotAllowedError, ConfigError, ObjectChangedError, RewrapError

PARTIAL_FORMAT = "rewrap-census-partial/1"
LISTING_FORMAT = "rewrap-census-listing/1"
CENSUS_FOLDER = "census"


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
        result.partial = _write_partial(result, settings, store, source)
    return result


def _write_partial(result: CensusAnswer, settings: Settings, store: ObjectStore, source: str) -> str:
    folder = run_folder(settings.report_prefix, result.run_id)
    bucket = result.refs[0].bucket
    key = folder.prefix + partial_name(bucket, [_ref_text(ref) for ref in result.refs])
    record = {
        "format": PARTIAL_FORMAT,
        "runId": result.run_id,
        "source": source,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "bucket": bucket,
        "keys": len(result.refs),
        "census": result.census.to_partial(),
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
class RunMerge:
    census: Census
    run_id: str
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
            continue
        found.add(name)
        merged.partials += 1
        merged.accounted += int(record.get("keys", 0))
        merged.census.merge_partial(record.get("census", {}))
    merged.census.versioning = _worst_versioning(versioning.values()) if versioning else ""
    merged.expected_partials = len(expected)
    if not sequences:
        merged.problems.append("no sweep listing record in the run: the keys that should be reported are not known")
    else:
        sequences.sort()
        merged.listing_done = [s for s, _ in sequences] == list(range(len(sequences))) and not sequences[-1][1]
        if not merged.listing_done:
            merged.problems.append("the sweep's listing is not finished (a hand-over's listing record is missing)")
        merged.missing = sorted(expected - found)
        merged.foreign += sorted(f"{name} (not enqueued by this run's sweep)" for name in found - expected)
        if merged.listed > merged.enqueued:
            merged.problems.append(
                f"{merged.listed - merged.enqueued:,} listed objects were skipped by the sweep's filters, not read"
            )
        if not merged.missing and merged.accounted != merged.enqueued:
            merged.problems.append(f"{merged.accounted:,} keys reported, {merged.enqueued:,} enqueued")
    return merged


def _worst_versioning(statuses: Iterable[str | None]) -> str | None:
    """The versioning the verdict must answer for: unknown beats enabled beats never enabled."""
    values = list(statuses)
    if None in values:
        return None
    return next((v for v in values if v), "")
