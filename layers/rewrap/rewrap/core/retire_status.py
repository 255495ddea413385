"""``rewrap retire status``: each retired version's state, how long it has been disabled, and every sign that
something still needed it, ending in "keep" or "undo" with the reasons.

The signs, and what each can tell:

* rewrap's own answers: a rotate request for a token on a disabled version answers ``version-disabled:
  re-enable vN to rotate it`` (counted in the metric ``ObjectsOnDisabledVersion``, whose alarm is in the
  template). Read here from the rotate function's reports under the report prefix since the disable.
  Each names the object and the version: proof that something holds a token of it.
* NCP's activity history of the key. Its entries name no key version and arrive late, and NCP keeps 30
  days and 30,000 of them. A decrypt or re-encrypt NCP refused since the disable may be a consumer that
  needed a disabled version (or a bad ciphertext: the entry does not say); one that succeeded used an
  enabled version (a disabled one refuses). An empty history of the last minutes proves nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rewrap.core.config import SweepTarget
from rewrap.core.ports import SINGLE_READ_BYTES, KeyManager, KeyState, ObjectRef, ObjectStore
from rewrap.core.retire_evidence import RECORD_FORMAT, evidence_folder
from rewrap.errors import RewrapError

# The rotate function's answer for a token on a disabled version (rewrap.errors.KmsVersionDisabledError).
ANSWER_RE = re.compile(r"version-disabled: re-enable v(\d+) to rotate it \(key ([^ :…]+)")
MAX_EXAMPLES = 5


@dataclass
class Retired:
    version: int
    retired_at: datetime  # the retirement record's time
    record: str  # its id


@dataclass
class Signs:
    answers: Counter[int] = field(default_factory=Counter)  # rewrap's version-disabled answers per version
    examples: dict[int, list[str]] = field(default_factory=dict)
    reports_read: int = 0
    refused_opens: int = 0  # NCP refused decrypts/re-encrypts since the disable
    opened: int = 0  # decrypts/re-encrypts NCP answered (enabled versions)
    requestors: Counter[str] = field(default_factory=Counter)  # of the refused ones
    history: str | None = None  # why the history could not be read


def retirement_records(store: ObjectStore, report_prefix: str, key_tag: str) -> list[dict[str, Any]]:
    """Every retirement and undo record of the key, oldest first."""
    folder = evidence_folder(report_prefix, key_tag)
    records = []
    for name in _keys(store, folder):
        if name.endswith(".json"):
            body = _read(store, folder.bucket, name)
            record = json.loads(body) if body else None
            if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
                records.append(record)
    return sorted(records, key=lambda r: str(r.get("time")))


def retired_versions(records: list[dict[str, Any]]) -> list[Retired]:
    """The versions whose latest change on record is a retirement (an undo after it cancels it)."""
    latest: dict[int, Retired | None] = {}
    for record in records:
        if record.get("outcome") not in ("retired", "re-enabled"):
            continue
        for entry in record.get("versions", []):
            version = int(entry["version"])
            when = datetime.fromisoformat(record["time"])
            latest[version] = Retired(version, when, record["id"]) if record["action"] == "retire" else None
    return [r for _, r in sorted(latest.items()) if r is not None]


def gather_signs(
    store: ObjectStore, keys: KeyManager, report_prefix: str, key_tag: str, since: datetime, now: datetime
) -> Signs:
    signs = Signs()
    _own_answers(store, report_prefix, key_tag, since, now, signs)
    try:
        history = keys.activities(key_tag, int(since.timestamp() * 1000), int(now.timestamp() * 1000))
    except RewrapError as error:
        signs.history = error.reason
        return signs
    for entry in history:
        if not entry.opens_ciphertext:
            continue
        if entry.succeeded is False:
            signs.refused_opens += 1
            signs.requestors[f"{entry.requestor or '?'} from {entry.ip or '?'}"] += 1
        else:
            signs.opened += 1
    return signs


def status_lines(
    state: KeyState, retired: list[Retired], signs: Signs, watch: timedelta, now: datetime, key_tag: str
) -> tuple[int, list[str]]:
    """The status of each retired version and the "keep" / "undo" line; exit 0 for keep, 1 for undo."""
    if not retired:
        return 0, [f"no retirement of key {key_tag} is on record (or every one was undone)"]
    lines = [f"key {key_tag}: state {state.status}, current version v{state.current_version}"]
    undo: list[str] = []
    for item in retired:
        version = state.versions.get(item.version)
        disabled_since = _since(version.changed_ms if version else None, item.retired_at)
        word = "missing" if version is None else ("disabled" if not version.enabled else "ENABLED again")
        lines.append(
            f"  v{item.version}: {word}, disabled {_age(now - disabled_since)} ago "
            f"(retired by {item.record}); rewrap's version-disabled answers since: {signs.answers[item.version]:,}"
        )
        lines += [f"      {example}" for example in signs.examples.get(item.version, [])]
        if signs.answers[item.version]:
            undo.append(f"{signs.answers[item.version]:,} objects still hold v{item.version} tokens (rewrap's answers)")
    lines.append(f"  rotate reports read: {signs.reports_read:,} (the metric ObjectsOnDisabledVersion counts the same)")
    lines += _history_lines(signs)
    if signs.refused_opens:
        undo.append(f"NCP refused {signs.refused_opens:,} decrypts/re-encrypts since the disable")
    oldest = min(_since(None, item.retired_at) for item in retired)
    if undo:
        verdict = "undo: " + "; ".join(undo) + f" — run `rewrap retire --undo --key-tag {key_tag}`"
        return 1, [*lines, verdict]
    watched = now - oldest
    if watched < watch:
        left = _age(watch - watched)
        return 0, [*lines, f"keep: no sign that anything needed them in {_age(watched)}; the watch goes on {left}"]
    return 0, [*lines, f"keep: no sign that anything needed them in the whole watch window ({_age(watch)})"]


def _history_lines(signs: Signs) -> list[str]:
    if signs.history is not None:
        return [f"  NCP activity history: could not be read ({signs.history})"]
    who = ", ".join(f"{name} ({count:,})" for name, count in signs.requestors.most_common(3))
    return [
        f"  NCP activity history: {signs.refused_opens:,} decrypts/re-encrypts refused since the disable"
        + (f", by {who}" if who else "")
        + f"; {signs.opened:,} answered (on enabled versions)",
        "    its entries name no key version and arrive late: a refusal may also be a bad ciphertext, and an",
        "    empty history of the last minutes proves nothing; NCP keeps 30 days and 30,000 entries",
    ]


def _own_answers(store: ObjectStore, prefix: str, key_tag: str, since: datetime, now: datetime, signs: Signs) -> None:
    """Count rewrap's version-disabled answers for the key in the rotate reports written since ``since``."""
    if not prefix.startswith("s3://"):
        return
    location = SweepTarget.parse(prefix)
    root = location.prefix.strip("/")
    day = since.date()
    while day <= now.date():
        folder = f"{root}/{day:%Y/%m/%d}/" if root else f"{day:%Y/%m/%d}/"
        for name in _keys(store, SweepTarget(location.bucket, folder)):
            if name.endswith(".jsonl"):
                signs.reports_read += 1
                _count_answers(_read(store, location.bucket, name), key_tag, since, signs)
        day += timedelta(days=1)


def _count_answers(body: bytes | None, key_tag: str, since: datetime, signs: Signs) -> None:
    if not body or b"version-disabled" not in body:
        return
    for line in body.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        match = ANSWER_RE.match(str(record.get("reason") or ""))
        when = str(record.get("time") or "")
        if match is None or not key_tag.startswith(match.group(2)) or when < since.isoformat(timespec="seconds"):
            continue
        version = int(match.group(1))
        signs.answers[version] += 1
        examples = signs.examples.setdefault(version, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"s3://{record.get('bucket')}/{record.get('key')} at {when}")


def _keys(store: ObjectStore, folder: SweepTarget) -> list[str]:
    names: list[str] = []
    token: str | None = None
    while True:
        items, token = store.list_page(folder.bucket, folder.prefix, token)
        names += [item.key for item in items]
        if token is None:
            return names


def _read(store: ObjectStore, bucket: str, key: str) -> bytes | None:
    ref = ObjectRef(bucket, key)
    read = store.read_small(ref, SINGLE_READ_BYTES)
    if read is None:
        return None
    head, body = read
    body = body if body is not None else store.get_body(ref, head)
    return body.data if body is not None else None


def _since(changed_ms: int | None, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(changed_ms / 1000, UTC) if changed_ms else fallback


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
