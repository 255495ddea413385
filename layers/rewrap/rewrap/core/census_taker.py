"""The census's reader: list a prefix (or take named objects) and count each object's tokens with the
engine's scanner, never writing and never calling KMS.

An object is read with one GET: the head comes with the body, which is kept when it is within the
single-read size; a larger body is read again and streamed in token-safe segments, so memory stays
bounded whatever the object size. Where the key's management API answers these credentials,
:func:`version_states` tells each version's state and :class:`RescueList` collects the objects on a
disabled version (read-only calls, made only when asked for; ``rewrap census`` asks when it has NCP
credentials).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rewrap.core.census import DEFAULT_KEY_LABEL, Census, CensusKind, ObjectCensus
from rewrap.core.forms import open_text
from rewrap.core.metadata import KEY_TAG_METADATA, scan_metadata
from rewrap.core.ports import SINGLE_READ_BYTES, KeyManager, Listed, ObjectRef, ObjectStore
from rewrap.core.token_segments import token_safe_segments
from rewrap.core.tokens import scan
from rewrap.errors import ObjectChangedError, ObjectOpaqueError, ObjectUnreadableError, RewrapError


@dataclass
class CensusTaker:
    store: ObjectStore
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
        """Count every object (every version with ``versions``) under the prefix into ``census``,
        but those the census's exclusions cover. A listing failure raises; a failure on one object
        is counted as ``failed`` and goes on."""
        census.where = f"s3://{bucket}/{prefix}"
        census.versions_scanned = versions
        if not versions:
            census.versioning = self.store.bucket_versioning(bucket)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="census") as pool:
            for page in self._pages(bucket, prefix, versions):
                kept = []
                for listed in page:
                    rule = census.excludes(listed.key)
                    if rule is None:
                        kept.append(listed)
                    else:
                        census.excluded[rule] += 1
                for item in pool.map(lambda listed: self.inspect(bucket, listed, versions), kept):
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
        return self.inspect_ref(ObjectRef(bucket, listed.key, version_id), not listed.is_latest)

    def inspect_ref(self, ref: ObjectRef, noncurrent: bool = False) -> ObjectCensus:
        """Count one object (a census request names its objects instead of listing them)."""
        try:
            try:
                return self._inspect(ref, noncurrent)
            except ObjectChangedError:  # overwritten between HEAD and GET: count the new content
                return self._inspect(ref, noncurrent)
        except ObjectUnreadableError as error:
            return ObjectCensus(ref, CensusKind.UNREADABLE, noncurrent=noncurrent, reason=error.reason)
        except RewrapError as error:
            return ObjectCensus(ref, CensusKind.FAILED, noncurrent=noncurrent, error=error)

    def _inspect(self, ref: ObjectRef, noncurrent: bool) -> ObjectCensus:
        read = self.store.read_small(ref, SINGLE_READ_BYTES)
        if read is None:
            return ObjectCensus(ref, CensusKind.MISSING, noncurrent=noncurrent)
        head, body = read
        whole = body.data if body is not None else None
        key_tag = head.metadata.get(KEY_TAG_METADATA) or self.default_key_tag or DEFAULT_KEY_LABEL
        in_metadata = scan_metadata(head.metadata)
        found: Counter[int] = Counter(t.version for tokens in in_metadata.tokens.values() for t in tokens)
        malformed = len(in_metadata.malformed)
        kind = CensusKind.ENVELOPE if in_metadata.envelope else CensusKind.NO_TOKENS
        if head.size == 0:
            return ObjectCensus(ref, kind, key_tag, noncurrent, dict(found), malformed)
        if whole is not None:
            chunks: Iterable[bytes] = [whole]
        else:
            stream = self.store.open_body(ref, head, self.chunk_bytes)
            if stream is None:
                return ObjectCensus(ref, CensusKind.MISSING, noncurrent=noncurrent)
            chunks = stream.chunks
        size = 0
        try:
            _, text = open_text(head.headers.get("ContentEncoding"), chunks)
            for offset, segment in token_safe_segments(text, self.segment_bytes):
                tokens, broken = scan(segment, offset)
                found.update(t.version for t in tokens)
                malformed += len(broken)
                size += len(segment)
        except ObjectOpaqueError as error:  # the metadata's tokens still count
            return ObjectCensus(
                ref, CensusKind.OPAQUE, key_tag, noncurrent, dict(found), malformed, size, reason=error.reason
            )
        if kind is CensusKind.NO_TOKENS and (found or malformed):
            kind = CensusKind.TEXT
        return ObjectCensus(ref, kind, key_tag, noncurrent, dict(found), malformed, size)


# --- version states: asked of the key's management API, where these credentials reach it ---------------
def version_states(keys: KeyManager, key_tags: Iterable[str]) -> dict[str, dict[int, str]]:
    """Per key tag, version → ``enabled`` / ``disabled``; a key whose state cannot be read (token-only
    credentials, no permission, NCP unreachable) is left out. Read only."""
    out: dict[str, dict[int, str]] = {}
    for key_tag in key_tags:
        try:
            out[key_tag] = keys.state(key_tag).states()
        except RewrapError:
            continue
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
