"""A full rotation run's verdict, published once: metrics per key tag, and one message to the alarm topic.

**Who notices that a run is complete: the next sweep.** A rotate request cannot know it is the last of its
run without counting the run's partials, which would cost a listing of the run folder per request. The
sweep runs on its schedule anyway and reads each target's checkpoint, which names the last full run over the
target and whether its verdict is published. At the start of a rotation run it lists that run's folder
(names only, about one request per thousand partials): when the run's listing is finished and every partial
it expects is there, or when this sweep is full for one of its targets (the older run will never be finished
then), it reads the partials, merges them per watched key (``census_runs.merge_run``) and publishes:

- ``verdict.json`` in the run folder, written only if absent, so of two sweeps only one goes on;
- per key tag (dimension ``KeyTag``): ``OldestKeyVersionInUse``, ``ObjectsBelowNewestVersion``,
  ``KeyVersionsRetirable`` and ``KeyVerdictSafe`` (1 on SAFE, else 0);
- one message to the alarm topic: the key, the versions that can be retired, the run, the counts, when NCP
  rotates the key next (where key info tells it), and for NOT SAFE or UNKNOWN the lines that say why.

So a verdict is known one schedule period after its run finished, at the latest; ``rewrap fleet status`` and
``rewrap census --from-reports`` tell it any time before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census_runs import LISTING_FORMAT, VERDICT_FORMAT, RunMerge, listing_finished, merge_run, run_folder
from rewrap.core.checkpoints import FULL, TargetPlan
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import Notifier, ObjectStore
from rewrap.deadline import Deadline
from rewrap.errors import ObjectChangedError, RewrapError
from rewrap.ncp.generations import KeyInfo
from rewrap.observability import key_metric, logger, metrics

VERDICT_NAME = "verdict.json"
# Leave the listing this much of the invocation at least: a run too large to merge in the rest waits.
LISTING_RESERVE_SECONDS = 80.0
WAITING, PUBLISHED, ALREADY, DEFERRED = "waiting", "published", "already published", "deferred"


@runtime_checkable
class KeyInfoSource(Protocol):
    def key_info(self, key_tag: str, deadline: Deadline | None = None) -> KeyInfo | None: ...


@dataclass
class KeyVerdict:
    key_tag: str
    newest: int
    verdict: str  # SAFE, NOT SAFE or UNKNOWN
    lines: list[str]
    oldest_in_use: int | None  # the lowest version an object still holds a token of
    below_newest: int  # objects holding a token older than the newest version
    retirable: list[int]
    next_rotation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyTag": self.key_tag,
            "newestVersion": self.newest,
            "verdict": self.verdict,
            "oldestVersionInUse": self.oldest_in_use,
            "objectsBelowNewest": self.below_newest,
            "retirableVersions": self.retirable,
            "nextRotation": self.next_rotation,
            "lines": self.lines,
        }


@dataclass
class RunVerdict:
    run_id: str
    folder: str  # s3://…/census/<runId>/
    run: RunMerge
    keys: list[KeyVerdict] = field(default_factory=list)
    unwatched: list[str] = field(default_factory=list)  # key tags objects name whose newest version is unknown

    @property
    def verdict(self) -> str:
        verdicts = {key.verdict for key in self.keys}
        return next((v for v in ("NOT SAFE", "UNKNOWN") if v in verdicts), "SAFE" if verdicts else "UNKNOWN")

    def subject(self) -> str:
        if len(self.keys) == 1:
            key = self.keys[0]
            retire = f", {_versions(key.retirable)} can be retired" if key.retirable else ""
            return f"rewrap: key {key.key_tag[:24]} {key.verdict}{retire} (run {self.run_id})"
        return f"rewrap: rotation run {self.run_id}: {self.verdict} ({len(self.keys)} keys)"

    def message(self) -> str:
        run = self.run
        state = "complete" if run.complete else "NOT complete"
        lines = [f"rewrap rotation run {self.run_id} is judged: {self.verdict}.", ""]
        for key in self.keys:
            upcoming = f"; NCP rotates it next at {key.next_rotation}" if key.next_rotation else ""
            lines.append(f"Key {key.key_tag} (newest v{key.newest}{upcoming}): {key.verdict}")
            oldest = f"v{key.oldest_in_use}" if key.oldest_in_use else "none"
            lines.append(f"  oldest version in use: {oldest}; objects below v{key.newest}: {key.below_newest:,}")
            if key.retirable:
                lines.append(f"  versions that can be retired: {_versions(key.retirable)}")
                lines.append(f"    rewrap retire --from-reports {self.folder} --below {max(key.retirable) + 1}")
            else:
                lines.append("  no version can be retired on this run's word; why:")
            lines += [f"  {line.strip()}" if not line.startswith("  ") else line for line in key.lines]
            lines.append("")
        lines += [
            f"  objects name key {tag}, whose newest version the sweep does not ask NCP for: add it to "
            "SweepKeyTags to judge it"
            for tag in self.unwatched
        ]
        lines.append(
            f"Run {self.run_id}: {state}; {run.listed:,} listed, {run.enqueued:,} enqueued, {run.accounted:,} reported "
            f"in {run.partials:,} partials"
        )
        lines += run.rotation.lines()
        lines.append(f"Evidence: {self.folder}{VERDICT_NAME}")
        return "\n".join(lines)

    def to_record(self) -> dict[str, Any]:
        return {
            "format": VERDICT_FORMAT,
            "runId": self.run_id,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "verdict": self.verdict,
            "complete": self.run.complete,
            "keys": [key.to_dict() for key in self.keys],
            "unwatchedKeyTags": self.unwatched,
            "rotation": self.run.rotation.to_dict(),
            "counts": {"listed": self.run.listed, "enqueued": self.run.enqueued, "reported": self.run.accounted},
        }


def publish_due_verdicts(
    plans: list[TargetPlan],
    settings: Settings,
    store: ObjectStore,
    kms: Any,
    notifier: Notifier | None,
    deadline: Deadline,
) -> None:
    """Judge and publish the last full run over each target whose verdict is not out yet, when it is due;
    the plans of the targets it covered are marked judged once it is out (their next checkpoint keeps it)."""
    due: dict[str, bool] = {}  # run id → superseded by this sweep (full for one of its targets)
    for plan in plans:
        if plan.full_run and not plan.judged:
            due[plan.full_run] = due.get(plan.full_run, False) or plan.scope == FULL
    for run_id, superseded in due.items():
        try:
            outcome = judge_and_publish(run_id, superseded, settings, store, kms, notifier, deadline)
        except RewrapError as error:
            logger.warning("run verdict not judged", extra={"runId": run_id, "reason": error.reason})
            continue
        logger.info("run verdict", extra={"runId": run_id, "outcome": outcome})
        if outcome in (PUBLISHED, ALREADY):
            for plan in plans:
                plan.judged = plan.judged or plan.full_run == run_id
        if outcome == DEFERRED:
            metrics.add_metric(name="RunVerdictsDeferred", unit=MetricUnit.Count, value=1)


def judge_and_publish(
    run_id: str,
    superseded: bool,
    settings: Settings,
    store: ObjectStore,
    kms: Any,
    notifier: Notifier | None,
    deadline: Deadline,
) -> str:
    folder = run_folder(settings.report_prefix, run_id)
    names = list(_names(store, folder))
    if VERDICT_NAME in names:
        return ALREADY
    listings = {name: _read(store, folder, name) for name in names if name.startswith("listing-")}
    if not (superseded or _all_in(listings, set(names))):
        return WAITING
    if deadline.expired(LISTING_RESERVE_SECONDS):
        return DEFERRED
    partials = [name for name in names if name.startswith("part-")]
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="verdict") as pool:
        bodies = list(pool.map(lambda name: (name, _read(store, folder, name)), partials))
    if deadline.expired(LISTING_RESERVE_SECONDS):
        return DEFERRED
    verdict = judge(run_id, f"s3://{folder.bucket}/{folder.prefix}", [*listings.items(), *bodies], kms)
    try:
        store.put_new(
            folder.bucket, folder.prefix + VERDICT_NAME, json.dumps(verdict.to_record()).encode(), "application/json"
        )
    except ObjectChangedError:
        return ALREADY  # another sweep got there first and told
    announce(verdict, notifier)
    return PUBLISHED


def judge(run_id: str, url: str, records: list[tuple[str, bytes]], kms: Any) -> RunVerdict:
    """The run judged for each key its sweep watched, against the newest version the sweep saw."""
    run = merge_run(records, url, None, None)
    verdict = RunVerdict(run_id, url, run)
    newest = {tag: max(versions) for tag, versions in run.newest_versions.items() if versions}
    verdict.unwatched = sorted(tag for tag in run.census.by_key if tag not in newest)
    for tag, version in sorted(newest.items()):
        judged = merge_run(records, url, version, tag)
        _, lines = judged.judge_lines()
        word = "SAFE" if lines[0].startswith("SAFE") else "NOT SAFE" if lines[0].startswith("NOT SAFE") else "UNKNOWN"
        in_use = [v for v, count in judged.census.by_key.get(tag, {}).items() if count.objects]
        oldest = min(in_use) if in_use else None
        proven = judged.complete and not judged.census.unknown and word != "UNKNOWN"
        retirable = list(range(1, min(oldest or version, version))) if proven else []
        key = KeyVerdict(tag, version, word, lines, oldest, judged.census.stale_objects, retirable)
        key.next_rotation = _next_rotation(kms, tag)
        verdict.keys.append(key)
    return verdict


def announce(verdict: RunVerdict, notifier: Notifier | None) -> None:
    """The metrics of each key, and the one message (a failure to send it is logged and counted)."""
    for key in verdict.keys:
        key_metric("OldestKeyVersionInUse", key.oldest_in_use or key.newest, key.key_tag)
        key_metric("ObjectsBelowNewestVersion", key.below_newest, key.key_tag)
        key_metric("KeyVersionsRetirable", len(key.retirable), key.key_tag)
        key_metric("KeyVerdictSafe", 1 if key.verdict == "SAFE" else 0, key.key_tag)
    if notifier is None:
        return
    attributes = {"rewrap-run-id": verdict.run_id, "rewrap-verdict": verdict.verdict}
    try:
        notifier.notify(verdict.subject(), verdict.message(), attributes)
    except RewrapError as error:
        logger.warning("verdict not announced", extra={"runId": verdict.run_id, "reason": error.reason})
        metrics.add_metric(name="VerdictNotificationFailures", unit=MetricUnit.Count, value=1)


def _all_in(listings: Mapping[str, bytes], names: set[str]) -> bool:
    """The run's listing finished (every hand-over's record there, the last not continued) and every partial
    its records expect is in the folder: a check on names only, no partial read."""
    sequences: list[tuple[int, bool]] = []
    expected: set[str] = set()
    for body in listings.values():
        record = json.loads(body)
        if isinstance(record, dict) and record.get("format") == LISTING_FORMAT:
            sequences.append((int(record.get("sequence", 0)), bool(record.get("continued"))))
            expected.update(record.get("partials", []))
    return listing_finished(sequences) and expected <= names


def _names(store: ObjectStore, folder: SweepTarget) -> Iterator[str]:
    token: str | None = None
    while True:
        items, token = store.list_page(folder.bucket, folder.prefix, token)
        yield from (item.key[len(folder.prefix) :] for item in items)
        if token is None:
            return


def _read(store: ObjectStore, folder: SweepTarget, name: str) -> bytes:
    record = store.read_record(folder.bucket, folder.prefix + name)
    return record.data if record is not None else b""


def _next_rotation(kms: Any, key_tag: str) -> str | None:
    """When NCP rotates the key next, where its key info says (2.0 with auto rotation); None otherwise."""
    if not isinstance(kms, KeyInfoSource):
        return None
    try:
        info = kms.key_info(key_tag)
    except RewrapError:
        return None
    if info is None or info.next_rotation_ms is None:
        return None
    return datetime.fromtimestamp(info.next_rotation_ms / 1000, UTC).isoformat(timespec="minutes")


def _versions(versions: list[int]) -> str:
    if len(versions) > 3 and versions == list(range(versions[0], versions[-1] + 1)):
        return f"v{versions[0]}-v{versions[-1]}"
    return ", ".join(f"v{v}" for v in versions)
