"""Census: on which key versions the ncpkms tokens under an S3 prefix sit, per key tag, counted in
tokens and in objects. It answers "what still depends on version N?" before N is disabled.

It sees with the engine's eyes: tokens anywhere in user-metadata values, bodies decoded from their
form (gzip, UTF-16/32 with BOM) and streamed in token-safe segments, so memory stays bounded
whatever the object size. Nothing is written and NCP KMS is never called: a census needs S3 read
access only.

Its verdict (``Census.judge``) is three-valued and never a false "safe": SAFE only when every
object under the prefix was read and scanned (none opaque, unreadable, malformed or failed, and
noncurrent versions scanned on a versioned bucket); NOT SAFE when old tokens remain; otherwise
UNKNOWN, with counts and examples by reason.
Who reads the objects (``census_taker.CensusTaker``) and how a fleet run's partials come back together
(``census_runs``) live beside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rewrap.core.ports import ObjectRef
from rewrap.core.records import Field, columns, record
from rewrap.errors import RewrapError

# The label of objects without ncpkms-key-tag metadata when no default key tag is known.
DEFAULT_KEY_LABEL = "(default)"
MAX_EXAMPLES = 10
MAX_UNKNOWN_EXAMPLES = 20
# Exit codes of a verdict.
SAFE_EXIT, NOT_PROVEN_EXIT, NOTHING_READ_EXIT = 0, 1, 2
# Why a census cannot prove a prefix safe, in the order the verdict lists them.
UNKNOWN_REASONS = ("opaque", "unreadable", "malformed", "failed", "noncurrent not scanned")


class CensusKind(StrEnum):
    ENVELOPE = "envelope"
    TEXT = "text"
    NO_TOKENS = "no-tokens"
    MISSING = "missing"
    OPAQUE = "opaque"  # could hold tokens the scanner cannot read
    UNREADABLE = "unreadable"  # archived, SSE-C, access denied
    FAILED = "failed"


@dataclass(frozen=True)
class ObjectCensus:
    ref: ObjectRef
    kind: CensusKind
    key_tag: str = ""
    noncurrent: bool = False
    versions: dict[int, int] = field(default_factory=dict)  # key version -> tokens
    malformed: int = 0
    size: int = 0
    error: RewrapError | None = None
    reason: str | None = None  # why the body was opaque (metadata tokens are still counted)

    @property
    def tokens(self) -> int:
        return sum(self.versions.values())

    def to_dict(self) -> dict[str, Any]:
        return record(self, CENSUS_RECORD)

    @property
    def unknown_reasons(self) -> list[tuple[str, str]]:
        """(reason kind, detail) for each way this object keeps the verdict from being proven."""
        out = []
        if self.kind in (CensusKind.OPAQUE, CensusKind.UNREADABLE, CensusKind.FAILED):
            detail = self.reason or (self.error.reason if self.error else str(self.kind))
            out.append((str(self.kind), detail))
        if self.malformed:
            out.append(("malformed", f"{self.malformed} malformed ncpkms token(s)"))
        return out


# A census record's fields, in order: ``ObjectCensus.to_dict`` and the CSV report's columns.
CENSUS_RECORD: tuple[Field[ObjectCensus], ...] = (
    Field("bucket", lambda c: c.ref.bucket),
    Field("key", lambda c: c.ref.key),
    Field("versionId", lambda c: c.ref.version_id),
    Field("noncurrent", lambda c: c.noncurrent),
    Field("keyTag", lambda c: c.key_tag),
    Field("kind", lambda c: str(c.kind)),
    Field("tokens", lambda c: c.tokens),
    Field("versions", lambda c: {f"v{v}": n for v, n in sorted(c.versions.items())}),
    Field("malformed", lambda c: c.malformed),
    Field("reason", lambda c: c.error.reason if c.error is not None else c.reason or None, optional=True),
)
CENSUS_FIELDS = columns(CENSUS_RECORD)


@dataclass
class Judgement:
    """The census verdict: ``verdict`` is SAFE, NOT SAFE or UNKNOWN (None: no --min-version asked)."""

    verdict: str | None
    exit_code: int
    lines: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exitCode": self.exit_code, "lines": self.lines}


@dataclass
class VersionCount:
    tokens: int = 0
    objects: int = 0
    noncurrent_objects: int = 0


@dataclass
class Census:
    """Totals of a census. ``min_version`` (and ``key_tag``, when given, to judge one key only)
    define what is stale: a token older than ``min_version``."""

    min_version: int | None = None
    key_tag: str | None = None
    by_key: dict[str, dict[int, VersionCount]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    noncurrent_objects: int = 0
    malformed_objects: int = 0
    bytes_read: int = 0
    stale_tokens: int = 0
    stale_objects: int = 0
    stale_noncurrent_objects: int = 0
    stale_examples: list[ObjectCensus] = field(default_factory=list)
    stale_by_version: dict[int, VersionCount] = field(default_factory=dict)
    failures: list[ObjectCensus] = field(default_factory=list)  # the first few, for the summary
    unknown: Counter[str] = field(default_factory=Counter)  # objects per UNKNOWN_REASONS entry
    unknown_examples: dict[str, list[str]] = field(default_factory=dict)
    # What the run looked at, for the verdict.
    where: str = ""
    versions_scanned: bool = False
    versioning: str | None = ""  # the bucket's versioning status; "" never enabled, None unknown
    exclude_prefixes: tuple[str, ...] = ()
    exclude_suffixes: tuple[str, ...] = ()
    excluded: Counter[str] = field(default_factory=Counter)  # objects skipped per exclusion
    # Objects per key tag by the oldest version they hold, with a few examples each: what lets a
    # census partial, written without knowing the minimum version, be judged against any minimum.
    by_oldest: dict[str, dict[int, VersionCount]] = field(default_factory=dict)
    oldest_examples: dict[str, dict[int, list[ObjectCensus]]] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return sum(self.kinds.values())

    @property
    def failed(self) -> int:
        return self.kinds[CensusKind.FAILED]

    def add(self, item: ObjectCensus) -> None:
        self.kinds[item.kind] += 1
        self.noncurrent_objects += item.noncurrent
        self.malformed_objects += item.malformed > 0
        self.bytes_read += item.size
        if item.kind is CensusKind.FAILED and len(self.failures) < MAX_EXAMPLES:
            self.failures.append(item)
        for reason, detail in item.unknown_reasons:
            self.unknown[reason] += 1
            reasons = self.unknown_examples.setdefault(reason, [])
            if len(reasons) < MAX_UNKNOWN_EXAMPLES:
                reasons.append(f"{item.ref}: {detail}")
        per_version = self.by_key.setdefault(item.key_tag, {})
        for version, tokens in item.versions.items():
            count = per_version.setdefault(version, VersionCount())
            count.tokens += tokens
            count.objects += 1
            count.noncurrent_objects += item.noncurrent
        if item.versions:
            oldest = min(item.versions)
            count = self.by_oldest.setdefault(item.key_tag, {}).setdefault(oldest, VersionCount())
            count.tokens += item.tokens
            count.objects += 1
            count.noncurrent_objects += item.noncurrent
            examples = self.oldest_examples.setdefault(item.key_tag, {}).setdefault(oldest, [])
            if len(examples) < MAX_EXAMPLES:
                examples.append(item)
        stale = self.stale_in(item)
        if stale:
            self.stale_tokens += stale
            self.stale_objects += 1
            self.stale_noncurrent_objects += item.noncurrent
            if len(self.stale_examples) < MAX_EXAMPLES:
                self.stale_examples.append(item)
            for version, tokens in item.versions.items():
                if self.min_version is not None and version < self.min_version:
                    count = self.stale_by_version.setdefault(version, VersionCount())
                    count.tokens += tokens
                    count.objects += 1
                    count.noncurrent_objects += item.noncurrent

    def stale_in(self, item: ObjectCensus) -> int:
        if self.min_version is None or (self.key_tag and item.key_tag != self.key_tag):
            return 0
        return sum(n for v, n in item.versions.items() if v < self.min_version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "kinds": {str(k): self.kinds[k] for k in CensusKind},
            "noncurrentObjects": self.noncurrent_objects,
            "malformedObjects": self.malformed_objects,
            "bytesRead": self.bytes_read,
            "keys": {
                tag: {
                    f"v{v}": {"tokens": c.tokens, "objects": c.objects, "noncurrentObjects": c.noncurrent_objects}
                    for v, c in sorted(versions.items())
                }
                for tag, versions in sorted(self.by_key.items())
                if versions
            },
            "minVersion": self.min_version,
            "staleTokens": self.stale_tokens,
            "staleObjects": self.stale_objects,
            "staleNoncurrentObjects": self.stale_noncurrent_objects,
            "unknown": {reason: self.unknown[reason] for reason in UNKNOWN_REASONS if self.unknown[reason]},
            "excluded": dict(self.excluded),
            "verdict": self.judge().to_dict(),
        }

    def to_partial(self) -> dict[str, Any]:
        """Everything :meth:`merge_partial` needs to add this census into another, whatever the
        minimum version the merged census is judged against."""

        def counts(table: dict[str, dict[int, VersionCount]]) -> dict[str, dict[str, list[int]]]:
            return {
                tag: {str(v): [c.tokens, c.objects, c.noncurrent_objects] for v, c in versions.items()}
                for tag, versions in table.items()
            }

        return {
            "kinds": {str(k): n for k, n in self.kinds.items() if n},
            "noncurrentObjects": self.noncurrent_objects,
            "malformedObjects": self.malformed_objects,
            "bytesRead": self.bytes_read,
            "keys": counts(self.by_key),
            "oldest": counts(self.by_oldest),
            "oldestExamples": {
                tag: {str(v): [item.to_dict() for item in items] for v, items in versions.items()}
                for tag, versions in self.oldest_examples.items()
            },
            "unknown": dict(self.unknown),
            "unknownExamples": self.unknown_examples,
        }

    def merge_partial(self, partial: dict[str, Any]) -> None:
        """Add a census partial (:meth:`to_partial`) into this census, judged by this census's minimum."""
        for kind, n in partial.get("kinds", {}).items():
            self.kinds[CensusKind(kind)] += int(n)
        self.noncurrent_objects += int(partial.get("noncurrentObjects", 0))
        self.malformed_objects += int(partial.get("malformedObjects", 0))
        self.bytes_read += int(partial.get("bytesRead", 0))
        for reason, n in partial.get("unknown", {}).items():
            self.unknown[reason] += int(n)
            reasons = self.unknown_examples.setdefault(reason, [])
            reasons += partial.get("unknownExamples", {}).get(reason, [])[: MAX_UNKNOWN_EXAMPLES - len(reasons)]
        judged = self.min_version is not None
        for tag, versions in partial.get("keys", {}).items():
            per_version = self.by_key.setdefault(tag, {})
            for name, (tokens, objects, noncurrent) in versions.items():
                version = int(name)
                _accumulate(per_version.setdefault(version, VersionCount()), tokens, objects, noncurrent)
                if judged and self._judges(tag) and version < int(self.min_version or 0):
                    self.stale_tokens += tokens
                    _accumulate(self.stale_by_version.setdefault(version, VersionCount()), tokens, objects, noncurrent)
        for tag, versions in partial.get("oldest", {}).items():
            per_oldest = self.by_oldest.setdefault(tag, {})
            for name, (tokens, objects, noncurrent) in versions.items():
                version = int(name)
                _accumulate(per_oldest.setdefault(version, VersionCount()), tokens, objects, noncurrent)
                examples = [_example(record) for record in partial.get("oldestExamples", {}).get(tag, {}).get(name, [])]
                kept = self.oldest_examples.setdefault(tag, {}).setdefault(version, [])
                kept += examples[: MAX_EXAMPLES - len(kept)]
                if judged and self._judges(tag) and version < int(self.min_version or 0):
                    self.stale_objects += objects
                    self.stale_noncurrent_objects += noncurrent
                    self.stale_examples += examples[: MAX_EXAMPLES - len(self.stale_examples)]

    def _judges(self, key_tag: str) -> bool:
        return not self.key_tag or key_tag == self.key_tag

    def excludes(self, key: str) -> str | None:
        """The exclusion that covers ``key``, if any."""
        for prefix in self.exclude_prefixes:
            if key.startswith(prefix):
                return f"prefix {prefix!r}"
        for suffix in self.exclude_suffixes:
            if key.endswith(suffix):
                return f"suffix {suffix!r}"
        return None

    @property
    def noncurrent_unscanned(self) -> str | None:
        """Why noncurrent versions may exist unscanned, or None."""
        if self.versions_scanned or self.versioning == "":
            return None
        if self.versioning is None:
            return "the bucket's versioning status could not be read; run with --versions"
        return f"bucket versioning is {self.versioning}: noncurrent versions were not scanned; run with --versions"

    def judge(self) -> Judgement:
        """SAFE only when proven; NOT SAFE when old tokens remain; otherwise UNKNOWN, with reasons."""
        where = self.where or "the prefix"
        lines: list[str] = []
        unknown = dict(self.unknown)
        if self.noncurrent_unscanned:
            unknown["noncurrent not scanned"] = 0
        if self.exclude_prefixes or self.exclude_suffixes:
            rules = [f"prefix {p!r}" for p in self.exclude_prefixes] + [f"suffix {s!r}" for s in self.exclude_suffixes]
            counted = ", ".join(f"{rule} ({self.excluded[rule]:,} objects)" for rule in rules)
            lines.append(f"  excluded by the operator, not read: {counted}")
        unseen = self.kinds[CensusKind.UNREADABLE] + self.kinds[CensusKind.FAILED] + self.kinds[CensusKind.MISSING]
        if self.objects == unseen:
            headline = (
                f"UNKNOWN: cannot prove it: nothing under {where} was listed (check the prefix)"
                if not self.objects
                else f"UNKNOWN: cannot prove it: nothing under {where} could be read"
            )
            return Judgement("UNKNOWN", NOTHING_READ_EXIT, [headline, *lines, *self._unknown_lines(unknown)])
        if self.min_version is None:
            headline = f"no verdict: pass --min-version N to ask whether anything under {where} is older than vN"
            code = NOT_PROVEN_EXIT if unknown else SAFE_EXIT
            return Judgement(None, code, [headline, *lines, *self._unknown_lines(unknown)])
        which = f" (key {self.key_tag})" if self.key_tag else ""
        if self.stale_tokens:
            headline = (
                f"NOT SAFE: {self.stale_tokens:,} tokens in {self.stale_objects:,} objects are older than "
                f"v{self.min_version}{which}"
            )
            per_version = [
                f"  v{v}: {c.tokens:,} tokens in {c.objects:,} objects"
                + (f" ({c.noncurrent_objects:,} noncurrent)" if c.noncurrent_objects else "")
                for v, c in sorted(self.stale_by_version.items())
            ]
            if unknown:
                per_version.append("  and besides, not everything could be looked at:")
            return Judgement(
                "NOT SAFE", NOT_PROVEN_EXIT, [headline, *per_version, *lines, *self._unknown_lines(unknown)]
            )
        if unknown:
            headline = (
                f"UNKNOWN: cannot prove it: nothing older than v{self.min_version}{which} in what was read under "
                f"{where}, but not everything could be looked at"
            )
            return Judgement("UNKNOWN", NOT_PROVEN_EXIT, [headline, *lines, *self._unknown_lines(unknown)])
        scope = "current and noncurrent versions" if self.versions_scanned else "bucket not versioned"
        headline = f"SAFE: nothing under {where} is older than v{self.min_version}{which} ({scope})"
        return Judgement("SAFE", SAFE_EXIT, [headline, *lines])

    def _unknown_lines(self, unknown: dict[str, int]) -> list[str]:
        lines = []
        for reason in UNKNOWN_REASONS:
            if reason not in unknown:
                continue
            if reason == "noncurrent not scanned":
                lines.append(f"  noncurrent not scanned: {self.noncurrent_unscanned}")
                continue
            lines.append(f"  {reason}: {unknown[reason]:,} objects")
            lines += [f"    {example}" for example in self.unknown_examples.get(reason, [])]
            if unknown[reason] > len(self.unknown_examples.get(reason, [])):
                lines.append(f"    … and {unknown[reason] - len(self.unknown_examples[reason]):,} more (see --report)")
        return lines


def _accumulate(count: VersionCount, tokens: int, objects: int, noncurrent: int) -> None:
    count.tokens += int(tokens)
    count.objects += int(objects)
    count.noncurrent_objects += int(noncurrent)


def _example(record: dict[str, Any]) -> ObjectCensus:
    """An example object of a census partial, back from its report record."""
    ref = ObjectRef(str(record.get("bucket", "")), str(record.get("key", "")), record.get("versionId"))
    versions = {int(str(name).lstrip("v")): int(n) for name, n in record.get("versions", {}).items()}
    return ObjectCensus(
        ref,
        CensusKind(record.get("kind", CensusKind.TEXT)),
        str(record.get("keyTag", "")),
        bool(record.get("noncurrent")),
        versions,
        int(record.get("malformed", 0)),
    )
