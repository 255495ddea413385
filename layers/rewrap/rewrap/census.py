"""Census: on which key versions the ncpkms tokens under an S3 prefix sit, per key tag, counted in
tokens and in objects. It answers "what still depends on version N?" before N is disabled.

Envelopes are judged from their HEAD (the body is never read, as in the engine); text bodies are
streamed and scanned in token-safe segments, so memory stays bounded whatever the object size.
Nothing is written and NCP KMS is never called: a census needs S3 read access only. Where KMS key info
is available, :func:`version_states` tells each version's state and :class:`RescueList` collects the
objects on a disabled version (read-only calls, made only when asked for).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rewrap.engine import CONTEXT_METADATA, KEY_TAG_METADATA
from rewrap.errors import ObjectChangedError, RewrapError
from rewrap.ncp.generations import ENABLED_STATES, STATE_WORDS
from rewrap.objects import Listed, S3Store
from rewrap.ports import ObjectRef
from rewrap.tokens import is_token, scan, token_safe_segments, token_version

# The label of objects without ncpkms-key-tag metadata when no default key tag is known.
DEFAULT_KEY_LABEL = "(default)"
MAX_EXAMPLES = 10


class Kind(StrEnum):
    ENVELOPE = "envelope"
    TEXT = "text"
    NO_TOKENS = "no-tokens"
    MISSING = "missing"
    FAILED = "failed"


@dataclass(frozen=True)
class ObjectCensus:
    ref: ObjectRef
    kind: Kind
    key_tag: str = ""
    noncurrent: bool = False
    versions: dict[int, int] = field(default_factory=dict)  # key version -> tokens
    malformed: int = 0
    size: int = 0
    error: RewrapError | None = None

    @property
    def tokens(self) -> int:
        return sum(self.versions.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bucket": self.ref.bucket,
            "key": self.ref.key,
            "versionId": self.ref.version_id,
            "noncurrent": self.noncurrent,
            "keyTag": self.key_tag,
            "kind": str(self.kind),
            "tokens": self.tokens,
            "versions": {f"v{v}": n for v, n in sorted(self.versions.items())},
            "malformed": self.malformed,
        }
        if self.error is not None:
            out["reason"] = self.error.reason
        return out


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
    failures: list[ObjectCensus] = field(default_factory=list)  # the first few, for the summary

    @property
    def objects(self) -> int:
        return sum(self.kinds.values())

    @property
    def failed(self) -> int:
        return self.kinds[Kind.FAILED]

    def add(self, item: ObjectCensus) -> None:
        self.kinds[item.kind] += 1
        self.noncurrent_objects += item.noncurrent
        self.malformed_objects += item.malformed > 0
        self.bytes_read += item.size
        if item.kind is Kind.FAILED and len(self.failures) < MAX_EXAMPLES:
            self.failures.append(item)
        per_version = self.by_key.setdefault(item.key_tag, {})
        for version, tokens in item.versions.items():
            count = per_version.setdefault(version, VersionCount())
            count.tokens += tokens
            count.objects += 1
            count.noncurrent_objects += item.noncurrent
        stale = self.stale_in(item)
        if stale:
            self.stale_tokens += stale
            self.stale_objects += 1
            self.stale_noncurrent_objects += item.noncurrent
            if len(self.stale_examples) < MAX_EXAMPLES:
                self.stale_examples.append(item)

    def stale_in(self, item: ObjectCensus) -> int:
        if self.min_version is None or (self.key_tag and item.key_tag != self.key_tag):
            return 0
        return sum(n for v, n in item.versions.items() if v < self.min_version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "kinds": {str(k): self.kinds[k] for k in Kind},
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
        }


@dataclass
class CensusTaker:
    store: S3Store
    default_key_tag: str = ""
    concurrency: int = 16
    page_size: int = 1000
    chunk_bytes: int = 1024 * 1024  # S3 read size
    segment_bytes: int = 1024 * 1024  # scanned at once; memory per object ≈ this + 2 tokens

    def run(
        self,
        bucket: str,
        prefix: str,
        census: Census,
        *,
        versions: bool = False,
        on_object: Callable[[ObjectCensus], None] | None = None,
    ) -> Census:
        """Count every object (every version with ``versions``) under the prefix into ``census``.
        A listing failure raises; a failure on one object is counted as ``failed`` and goes on."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="census") as pool:
            for page in self._pages(bucket, prefix, versions):
                for item in pool.map(lambda listed: self.inspect(bucket, listed, versions), page):
                    census.add(item)
                    if on_object is not None:
                        on_object(item)
        return census

    def _pages(self, bucket: str, prefix: str, versions: bool) -> Iterator[list[Listed]]:
        if versions:
            marker: tuple[str, str] | None = None
            while True:
                items, marker = self.store.list_versions_page(bucket, prefix, marker, self.page_size)
                yield items
                if marker is None:
                    return
        token: str | None = None
        while True:
            items, token = self.store.list_page(bucket, prefix, token, self.page_size)
            yield items
            if token is None:
                return

    def inspect(self, bucket: str, listed: Listed, versions: bool = False) -> ObjectCensus:
        version_id = listed.version_id if versions and listed.version_id not in (None, "null") else None
        ref = ObjectRef(bucket, listed.key, version_id)
        noncurrent = not listed.is_latest
        try:
            try:
                return self._inspect(ref, noncurrent)
            except ObjectChangedError:  # overwritten between HEAD and GET: count the new content
                return self._inspect(ref, noncurrent)
        except RewrapError as error:
            return ObjectCensus(ref, Kind.FAILED, noncurrent=noncurrent, error=error)

    def _inspect(self, ref: ObjectRef, noncurrent: bool) -> ObjectCensus:
        head = self.store.head(ref)
        if head is None:
            return ObjectCensus(ref, Kind.MISSING, noncurrent=noncurrent)
        key_tag = head.metadata.get(KEY_TAG_METADATA) or self.default_key_tag or DEFAULT_KEY_LABEL
        found: Counter[int] = Counter()
        malformed = 0
        for name, value in head.metadata.items():
            if name in (KEY_TAG_METADATA, CONTEXT_METADATA) or not value.startswith("ncpkms:"):
                continue
            if is_token(value):
                found[token_version(value)] += 1
            else:
                malformed += 1
        if found or malformed:
            return ObjectCensus(ref, Kind.ENVELOPE, key_tag, noncurrent, dict(found), malformed)
        if head.size == 0:
            return ObjectCensus(ref, Kind.NO_TOKENS, key_tag, noncurrent)
        stream = self.store.open_body(ref, head, self.chunk_bytes)
        if stream is None:
            return ObjectCensus(ref, Kind.MISSING, noncurrent=noncurrent)
        size = 0
        for offset, segment in token_safe_segments(stream.chunks, self.segment_bytes):
            tokens, bad = scan(segment, offset)
            found.update(t.version for t in tokens)
            malformed += len(bad)
            size += len(segment)
        kind = Kind.TEXT if found or malformed else Kind.NO_TOKENS
        return ObjectCensus(ref, kind, key_tag, noncurrent, dict(found), malformed, size)


# --- version states (issue 12): a helper the census can call when KMS key info is available ---------
def version_states(kms: Any, key_tags: Iterable[str]) -> dict[str, dict[int, str]]:
    """Per key tag, version → ``enabled`` / ``disabled``, where the KMS API generation tells these
    credentials (2.0, v3 with a signature); a key it cannot tell about is left out. Read only."""
    out: dict[str, dict[int, str]] = {}
    for key_tag in key_tags:
        try:
            info = kms.key_info(key_tag)
            states = kms.version_states(key_tag, set(range(1, info.current_version + 1))) if info else None
        except RewrapError:
            continue
        if states:
            out[key_tag] = {
                v: "enabled" if s in ENABLED_STATES else STATE_WORDS.get(s, s.lower()) for v, s in states.items()
            }
    return out


@dataclass
class RescueList:
    """An ``on_object`` hook collecting the objects holding a token on a version that is not enabled:
    they cannot be decrypted (nor re-wrapped) until that version is enabled again."""

    states: dict[str, dict[int, str]]
    objects: list[ObjectCensus] = field(default_factory=list)

    def __call__(self, item: ObjectCensus) -> None:
        known = self.states.get(item.key_tag, {})
        if any(known.get(v, "enabled") != "enabled" for v in item.versions):
            self.objects.append(item)


def with_version_states(summary: dict[str, Any], states: dict[str, dict[int, str]]) -> dict[str, Any]:
    """``Census.to_dict()`` with each version's state next to its counts and the disabled versions that
    still hold tokens (``rescueVersions``)."""
    rescue: dict[str, list[int]] = {}
    for key_tag, versions in summary.get("keys", {}).items():
        known = states.get(key_tag, {})
        for name, counts in versions.items():
            state = known.get(int(name[1:]))
            if state is not None:
                counts["state"] = state
                if state != "enabled" and counts["tokens"]:
                    rescue.setdefault(key_tag, []).append(int(name[1:]))
    return {**summary, "rescueVersions": rescue}
