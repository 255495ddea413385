"""The verdict a retirement rests on, from a census of named targets taken now or from a fleet census run's
partials, with what an auditor asks about it: when the data was read, the key's newest version then, the
counts per version, the targets, exclusions, opaque and unreadable counts, and the SHA-256 of the census
data relied on (kept beside the evidence, so the digest can be checked)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from rewrap.core.census import Census, ObjectCensus
from rewrap.core.census_runs import merge_run, run_records
from rewrap.core.census_taker import CensusTaker
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import ObjectStore


@dataclass
class Verdict:
    """One census's answer for the versions to retire: ``verdict`` is SAFE, NOT SAFE or UNKNOWN."""

    source: str  # s3://bucket/prefix, or the census run's folder
    census: Census
    lines: list[str]
    verdict: str
    taken_at: datetime  # when its data was read: the census's start, a run's oldest record
    newest_version: int | None  # the key's current version then (None: not known)
    data_sha256: str
    data_name: str  # what the digest is of
    data: bytes = b""  # the census data itself (direct census), or the run's record manifest
    run_id: str | None = None
    run_complete: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        census = self.census.to_dict()
        return {
            "source": self.source,
            "kind": "census run" if self.run_id else "census",
            "runId": self.run_id,
            "runComplete": self.run_complete,
            "verdict": self.verdict,
            "lines": self.lines,
            "takenAt": self.taken_at.isoformat(timespec="seconds"),
            "newestVersion": self.newest_version,
            "objects": census["objects"],
            "kinds": census["kinds"],
            "countsPerVersion": census["keys"],
            "opaque": census["kinds"].get("opaque", 0),
            "unreadable": census["kinds"].get("unreadable", 0),
            "unknown": census["unknown"],
            "exclusions": {
                "prefixes": list(self.census.exclude_prefixes),
                "suffixes": list(self.census.exclude_suffixes),
                "objectsSkipped": census["excluded"],
            },
            "versionsScanned": self.census.versions_scanned,
            "data": {"name": self.data_name, "sha256": self.data_sha256},
            "notes": self.notes,
        }


def judge_for(census: Census, verdict: str | None, versions: set[int]) -> tuple[str, list[str]]:
    """The verdict for ``versions`` alone (the census is judged against ``max(versions) + 1``): tokens
    older than that only on versions not being retired (one disabled before) do not block them."""
    if verdict != "NOT SAFE":
        return verdict or "UNKNOWN", []
    stale = set(census.stale_by_version)
    if stale & versions:
        return "NOT SAFE", []
    others = ", ".join(f"v{v}" for v in sorted(stale))
    note = f"older tokens remain only on {others}, which this retirement leaves as it is"
    return ("UNKNOWN" if census.unknown or census.noncurrent_unscanned else "SAFE"), [note]


class _Spool:
    """The census records as JSON lines, hashed as they are written (memory stays flat)."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by read())
        self.digest = hashlib.sha256()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
        self.file.write(line)
        self.digest.update(line)

    def read(self) -> bytes:
        self.file.seek(0)
        data = self.file.read()
        self.file.close()
        return data


def census_verdict(
    store: ObjectStore,
    settings: Settings,
    target: SweepTarget,
    key_tag: str,
    versions: set[int],
    newest_version: int,
    *,
    scan_versions: bool = False,
    exclude_prefixes: tuple[str, ...] = (),
    exclude_suffixes: tuple[str, ...] = (),
) -> Verdict:
    """A census of ``target`` now, judged for ``versions`` of ``key_tag``."""
    census = Census(
        min_version=max(versions) + 1,
        key_tag=key_tag,
        exclude_prefixes=exclude_prefixes,
        exclude_suffixes=exclude_suffixes,
    )
    taker = CensusTaker(store, default_key_tag=settings.key_tag, concurrency=settings.concurrency)
    spool = _Spool()

    def seen(item: ObjectCensus) -> None:
        spool.write(item.to_dict())

    taken_at = datetime.now(UTC)
    taker.run(target.bucket, target.prefix, census, versions=scan_versions, on_object=seen)
    judgement = census.judge()
    verdict, notes = judge_for(census, judgement.verdict, versions)
    spool.write({"record": "verdict", **judgement.to_dict()})
    return Verdict(
        source=f"s3://{target.bucket}/{target.prefix}",
        census=census,
        lines=judgement.lines,
        verdict=verdict,
        taken_at=taken_at,
        newest_version=newest_version,
        data_sha256=spool.digest.hexdigest(),
        data_name="census records (JSON lines, one per object, then the verdict)",
        data=spool.read(),
        notes=notes,
    )


def run_verdict(store: ObjectStore, folder: SweepTarget, key_tag: str, versions: set[int]) -> Verdict:
    """A fleet census run's partials merged, judged for ``versions`` of ``key_tag``. The digest is of
    the run's manifest: each record's name and SHA-256, in name order."""
    hashes: dict[str, str] = {}

    def hashed(records: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
        for name, body in records:
            hashes[name] = hashlib.sha256(body).hexdigest()
            yield name, body

    url = f"s3://{folder.bucket}/{folder.prefix}"
    run = merge_run(hashed(run_records(store, folder)), url, max(versions) + 1, key_tag)
    _, lines = run.judge_lines()
    verdict = run.census.judge().verdict if run.complete else "UNKNOWN"
    verdict, notes = judge_for(run.census, verdict, versions)
    manifest = "".join(f"{name}\t{digest}\n" for name, digest in sorted(hashes.items())).encode()
    newest = run.newest_versions.get(key_tag, set())
    if len(newest) > 1:
        notes.append(f"the key rotated during the run (newest versions seen: {sorted(newest)})")
    if not newest:
        notes.append("the run's listing records do not name the key's newest version")
    times = sorted(run.times)
    return Verdict(
        source=url,
        census=run.census,
        lines=lines,
        verdict=verdict,
        taken_at=datetime.fromisoformat(times[0]) if times else datetime.fromtimestamp(0, UTC),
        newest_version=next(iter(newest)) if len(newest) == 1 else None,
        data_sha256=hashlib.sha256(manifest).hexdigest(),
        data_name="the run's manifest: each record's name and SHA-256, in name order",
        data=manifest,
        run_id=run.run_id,
        run_complete=run.complete,
        notes=notes,
    )
