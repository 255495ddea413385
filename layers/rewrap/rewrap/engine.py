"""The rotation engine: from object references to per-object results.

One call handles every object of an invocation together:
1. HEAD each object (in parallel) and scan its user metadata: an envelope holds tokens in metadata
   values (a whole value or inside one, ``alg=A256GCM;dek=ncpkms:v1:…``).
2. Read bodies in memory-bounded waves, decode their form (gzip, UTF-16/32 with BOM; see
   ``forms``) and scan them for tokens. A body the scanner cannot read is ``opaque``, an object S3
   will not give us ``unreadable``: both reported with the reason, never ``no-tokens``.
3. Re-wrap the tokens of all objects in as few KMS requests as the list limit allows, grouped by
   (key tag, context), skipping tokens already at the newest version known to this container.
4. Write back only objects where a token's version went up, conditionally on the ETag read: body
   (in its form) and metadata together in one write.
An object is either rotated correctly or left untouched; each yields exactly one result.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from rewrap.config import Settings
from rewrap.deadline import Deadline
from rewrap.errors import (
    BucketNotAllowedError,
    ConfigError,
    KmsInvalidReplyError,
    KmsKeyDisabledError,
    KmsRejectedError,
    KmsWrongRegionError,
    ObjectOpaqueError,
    ObjectRejectedError,
    ObjectUnreadableError,
    OutOfTimeError,
    PartialBatchError,
    PermanentError,
    RetryableError,
    RewrapError,
    VerificationError,
)
from rewrap.forms import Encoder, Form, encode_whole, open_text
from rewrap.ports import (
    MAX_COPY_PART_BYTES,
    MAX_PARTS,
    USER_METADATA_LIMIT,
    ObjectBody,
    ObjectHead,
    ObjectRef,
    ObjectStore,
    PartWriter,
    Rewrapper,
    metadata_bytes,
)
from rewrap.tokens import Found, Malformed, known_version, scan, splice, token_safe_segments

log = logging.getLogger(__name__)

KEY_TAG_METADATA = "ncpkms-key-tag"
CONTEXT_METADATA = "ncpkms-context"
# Written on rotated text objects so a re-trigger by our own write is answered from the HEAD.
STAMP_VERSION_METADATA = "rewrap-min-version"
STAMP_SIZE_METADATA = "rewrap-body-size"
_CONTROL_METADATA = {KEY_TAG_METADATA, CONTEXT_METADATA, STAMP_VERSION_METADATA, STAMP_SIZE_METADATA}
# Objects declared text (REWRAP_TEXT_SUFFIXES) up to this size are read with a single GET.
SINGLE_READ_BYTES = 256 * 1024
# Keep this much time for the writes themselves; no write starts later than that.
WRITE_RESERVE_SECONDS = 2.0


class Status(StrEnum):
    ROTATED = "rotated"
    WOULD_ROTATE = "would-rotate"
    CURRENT = "current"
    NO_TOKENS = "no-tokens"
    MISSING = "missing"
    OPAQUE = "opaque"  # could hold tokens the scanner cannot read (an archive, another compression)
    UNREADABLE = "unreadable"  # S3 will not give us the body (archived, SSE-C, access denied)
    FAILED = "failed"


# Results that say "not looked at", with a reason, without being failures to retry.
UNSEEN = (Status.OPAQUE, Status.UNREADABLE)


@dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    status: Status
    tokens: int = 0
    rotated_tokens: int = 0
    old_versions: tuple[int, ...] = ()
    new_version: int | None = None
    new_version_id: str | None = None
    error: RewrapError | None = None
    reason: str | None = None  # why an object is opaque ("opaque: zip archive") or unreadable ("archived")

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bucket": self.ref.bucket,
            "key": self.ref.key,
            "versionId": self.ref.version_id,
            "status": str(self.status),
            "tokens": self.tokens,
            "rotatedTokens": self.rotated_tokens,
            "fromVersions": list(self.old_versions),
            "toVersion": self.new_version,
        }
        if self.new_version_id:
            out["newVersionId"] = self.new_version_id
        if self.error is not None:
            out["errorClass"] = "retryable" if self.error.retryable else "permanent"
            out["reason"] = self.error.reason
        elif self.reason:
            out["reason"] = self.reason
        return out


def unseen(ref: ObjectRef, error: RewrapError) -> ObjectResult | None:
    """The result of an object that could not be looked at, or None for a real failure."""
    if isinstance(error, ObjectOpaqueError):
        return ObjectResult(ref, Status.OPAQUE, reason=error.reason)
    if isinstance(error, ObjectUnreadableError):
        return ObjectResult(ref, Status.UNREADABLE, reason=error.unreadable_reason)
    return None


def scan_metadata(metadata: Mapping[str, str]) -> tuple[dict[str, list[Found]], list[tuple[str, Malformed]]]:
    """Tokens anywhere inside user-metadata values (control values left out), per name, and the
    malformed ones."""
    found: dict[str, list[Found]] = {}
    malformed: list[tuple[str, Malformed]] = []
    for name, value in metadata.items():
        if name in _CONTROL_METADATA:
            continue
        tokens, bad = scan(value.encode("utf-8"))
        if tokens:
            found[name] = tokens
        malformed.extend((name, m) for m in bad)
    return found, malformed


@dataclass
class _Work:
    """An object in flight between its HEAD and its write."""

    ref: ObjectRef
    head: ObjectHead
    key_tag: str
    context: str | None
    envelope: dict[str, list[Found]] = field(default_factory=dict)  # metadata name -> its tokens
    body: ObjectBody | None = None
    form: Form = field(default_factory=Form)
    text: bytes = b""  # the decoded body the tokens were found in
    found: list[Found] = field(default_factory=list)
    opaque: str | None = None  # the body could not be read; the metadata tokens still rotate
    restream: bool = False  # decoded body too large for a wave: stream it instead

    @property
    def meta_tokens(self) -> list[str]:
        return [t.text for tokens in self.envelope.values() for t in tokens]

    @property
    def tokens(self) -> list[str]:
        return self.meta_tokens + [t.text for t in self.found]

    @property
    def content_encoding(self) -> str | None:
        return self.head.headers.get("ContentEncoding")

    def metadata_with(self, replacements: Mapping[str, str]) -> dict[str, str]:
        metadata = dict(self.head.metadata)
        for name, tokens in self.envelope.items():
            metadata[name] = splice(metadata[name].encode("utf-8"), tokens, replacements).decode("utf-8")
        return metadata


class VersionCache:
    """The newest version seen per key tag, forgotten after ``ttl`` seconds (a rotation may happen)."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._newest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def newest(self, key_tag: str) -> int | None:
        entry = self._newest.get(key_tag)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def observe(self, key_tag: str, version: int) -> None:
        with self._lock:
            known = self.newest(key_tag)
            if known is None or version > known:
                self._newest[key_tag] = (version, time.monotonic() + self.ttl)

    def is_current(self, key_tag: str, version: int) -> bool:
        newest = self.newest(key_tag)
        return newest is not None and version >= newest


T = TypeVar("T")
R = TypeVar("R")


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        kms: Rewrapper,
        *,
        version_cache: VersionCache | None = None,
        memory_budget_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kms = kms
        self.versions = version_cache or VersionCache(settings.version_cache_seconds)
        self.memory_budget_bytes = memory_budget_bytes
        self._decoded = _Allowance(memory_budget_bytes)

    def rotate(
        self, refs: Sequence[ObjectRef], *, deadline: Deadline | None = None, dry_run: bool | None = None
    ) -> list[ObjectResult]:
        """One result per reference, in order (a reference given twice is processed once)."""
        deadline = deadline or Deadline(None)
        dry_run = self.settings.dry_run if dry_run is None else dry_run
        unique = list(dict.fromkeys(refs))
        results: dict[ObjectRef, ObjectResult] = {}
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="rewrap") as pool:
            run = _Runner(pool)
            self._decoded = _Allowance(self.memory_budget_bytes)
            works = _settle(run.each(self._inspect, unique, deadline), results)
            streamed = [w for w in works if self._streams(w)]
            for wave in self._waves([w for w in works if not self._streams(w)]):
                # decoded gzip/UTF-16 bodies share what the wave's raw bodies leave of the budget
                self._decoded = _Allowance(self.memory_budget_bytes - sum(w.head.size for w in wave))
                ready = _settle(run.each(self._load_body, wave, deadline), results)
                streamed += [w for w in ready if w.restream]
                ready = [w for w in ready if not w.restream]
                outcome = self._rewrap(run, _token_groups(ready), deadline)
                finish = functools.partial(self._finish, outcome=outcome, dry_run=dry_run)
                _settle(run.each(finish, ready, deadline), results)
                for work in ready:  # ``works`` outlives the wave: let its bodies go, or waves bound nothing
                    work.body, work.text, work.found = None, b"", []
            for work in streamed:
                results[work.ref] = self._rotate_streamed(run, work, deadline, dry_run)
        return [results[ref] for ref in refs]

    # --- 1. inspect -----------------------------------------------------------------------------
    def _inspect(self, ref: ObjectRef, deadline: Deadline) -> _Work | ObjectResult:
        if not self.settings.bucket_allowed(ref.bucket):
            raise BucketNotAllowedError(f"bucket {ref.bucket!r} is not in REWRAP_BUCKETS")
        if deadline.expired(WRITE_RESERVE_SECONDS):
            raise OutOfTimeError("invocation ran out of time before the object was read")
        body: ObjectBody | None = None
        if self._known_text(ref):
            read = self.store.read_small(ref, SINGLE_READ_BYTES)
            head, body = read if read is not None else (None, None)
        else:
            head = self.store.head(ref)
        if head is None:
            return ObjectResult(ref, Status.MISSING)
        if head.archived:
            return ObjectResult(ref, Status.UNREADABLE, reason="archived")
        if ref.version_id:
            current = self.store.head(ObjectRef(ref.bucket, ref.key))
            if current is None or current.version_id != head.version_id:
                raise ObjectRejectedError(
                    "this is a noncurrent version; S3 versions are immutable, so it keeps its key version "
                    "until it expires or is deleted",
                    code="noncurrent-version",
                )
        metadata = head.metadata
        key_tag = metadata.get(KEY_TAG_METADATA) or self.settings.key_tag
        if not key_tag:
            raise ConfigError("no key tag: set NCP_KMS_KEY_TAG or the object's ncpkms-key-tag metadata")
        work = _Work(ref, head, key_tag, _context(metadata.get(CONTEXT_METADATA)))
        work.envelope, malformed = scan_metadata(metadata)
        if malformed:
            name, first = malformed[0]
            raise ObjectRejectedError(
                f"metadata {name!r} holds a malformed ncpkms token: {first.reason}", code="malformed-token"
            )
        if head.size == 0:
            return work if work.envelope else ObjectResult(ref, Status.NO_TOKENS)
        if head.size > self.settings.max_object_bytes:
            raise ObjectRejectedError(
                f"object is {head.size} bytes, above REWRAP_MAX_OBJECT_BYTES ({self.settings.max_object_bytes})",
                code="too-large",
            )
        if body is not None:
            return self._take_body(work, body)
        if self._stamp_is_current(work) and all(
            self.versions.is_current(key_tag, known_version(t)) for t in work.meta_tokens
        ):
            stamp = min([int(metadata[STAMP_VERSION_METADATA]), *map(known_version, work.meta_tokens)])
            return ObjectResult(ref, Status.CURRENT, old_versions=(stamp,), new_version=stamp)
        return work

    def _known_text(self, ref: ObjectRef) -> bool:
        """Keys the configuration declares text: one GET instead of HEAD + GET for small ones."""
        return bool(self.settings.text_suffixes) and ref.key.endswith(self.settings.text_suffixes)

    def _stamp_is_current(self, work: _Work) -> bool:
        stamp, size = work.head.metadata.get(STAMP_VERSION_METADATA), work.head.metadata.get(STAMP_SIZE_METADATA)
        if not (stamp and stamp.isdigit() and size == str(work.head.size)):
            return False
        return self.versions.is_current(work.key_tag, int(stamp))

    # --- 2. read ------------------------------------------------------------------------------
    def _waves(self, works: list[_Work]) -> Iterator[list[_Work]]:
        """Groups whose bodies fit the memory budget together."""
        wave: list[_Work] = []
        size = 0
        for work in sorted(works, key=lambda w: w.head.size):
            body_size = work.head.size
            if wave and size + body_size > self.memory_budget_bytes:
                yield wave
                wave, size = [], 0
            wave.append(work)
            size += body_size
        if wave:
            yield wave

    def _load_body(self, work: _Work, deadline: Deadline) -> _Work | ObjectResult:
        if work.body is not None or work.head.size == 0:
            return work
        body = self.store.get_body(work.ref, work.head)
        if body is None:
            return ObjectResult(work.ref, Status.MISSING)
        return self._take_body(work, body)

    def _take_body(self, work: _Work, body: ObjectBody) -> _Work | ObjectResult:
        try:
            form, chunks = open_text(work.content_encoding, [body.data])
            if form.plain:
                text = body.data
            else:  # a small compressed body may decode to a large one: past the budget, stream it
                parts, size = [], 0
                for part in chunks:
                    parts.append(part)
                    size += len(part)
                    if size > self.settings.stream_threshold_bytes or not self._decoded.take(len(part)):
                        self._decoded.give(size - len(part))
                        work.restream = True
                        return work
                text = b"".join(parts)
        except ObjectOpaqueError as error:
            if not work.envelope:
                raise
            work.opaque = error.reason  # rotate what the metadata holds; the body stays as it is
            work.body = body
            return work
        found, malformed = scan(text)
        if malformed:
            raise _malformed(malformed, form=form)
        if not found and not work.envelope:
            return ObjectResult(work.ref, Status.NO_TOKENS)
        work.body, work.form, work.text, work.found = body, form, text, found
        return work

    # --- 3. re-wrap ---------------------------------------------------------------------------
    def _rewrap(self, run: _Runner, groups: dict[_Group, set[str]], deadline: Deadline) -> _Rewrapped:
        """Re-wrap every token not known to be current, in as few requests as the list limit allows."""
        batches = [
            (key_tag, context, chunk)
            for (key_tag, context), tokens in groups.items()
            for chunk in self.kms.batches(
                sorted(t for t in tokens if not self.versions.is_current(key_tag, known_version(t)))
            )
        ]
        outcome = _Rewrapped()
        for (key_tag, context, chunk), replies in run.each(self._call_kms, batches, deadline):
            items = replies if isinstance(replies, list) else [replies] * len(chunk)
            for token, reply in zip(chunk, items, strict=True):
                if isinstance(reply, RewrapError):
                    outcome.errors[(key_tag, context, token)] = reply
                else:
                    outcome.new[(key_tag, context, token)] = reply
                    self.versions.observe(key_tag, known_version(reply))
        # Every reply for a key must reach the newest version seen for it: one left behind (say, the
        # old version relabelled) would otherwise be reported "current". Retry it instead.
        newest: dict[str, int] = {}
        for (key_tag, _, _), reply in outcome.new.items():
            newest[key_tag] = max(newest.get(key_tag, 0), known_version(reply))
        for where, reply in list(outcome.new.items()):
            if known_version(reply) < newest[where[0]]:
                del outcome.new[where]
                outcome.errors[where] = KmsInvalidReplyError("reply is below the key's newest version")
        return outcome

    def _call_kms(self, batch: tuple[str, str | None, list[str]], deadline: Deadline) -> list[str | RewrapError]:
        key_tag, context, chunk = batch
        replies: list[str | RewrapError] = self._isolated(self.kms.re_encrypt, key_tag, context, chunk, deadline)
        if self.settings.verify:
            replies = self._verify(key_tag, context, chunk, replies, deadline)
        return replies

    def _isolated(
        self,
        call: Callable[[str, list[str], str | None, Deadline], Sequence[R]],
        key_tag: str,
        context: str | None,
        items: list[str],
        deadline: Deadline,
    ) -> list[R | RewrapError]:
        """``call`` on ``items``, one outcome per item. KMS refuses a whole list for one bad item (a
        token of another key, an unknown or disabled version); the refusal must fail only that item's
        objects. A refused list is first explained by the key's state (a disabled key fails them all,
        a disabled version its own items), then searched (:func:`isolate`)."""

        def attempt(part: list[str]) -> list[R | RewrapError] | KmsRejectedError:
            try:
                return list(call(key_tag, part, context, deadline))
            except PartialBatchError as partial:  # some items failed: only their objects fail
                return partial.results  # type: ignore[return-value]  # all items answered
            except (KmsKeyDisabledError, KmsWrongRegionError):
                raise  # the key's state, not an item's: every item fails with it
            except KmsRejectedError as refusal:
                return refusal

        first = attempt(items)
        explain = getattr(self.kms, "explain_refusal", None)
        if not isinstance(first, KmsRejectedError):
            out: list[R | RewrapError | None] = list(first)
        else:
            disabled = explain(key_tag, [known_version(t) for t in items], first, deadline) if explain else {}
            out = [disabled.get(known_version(t)) for t in items]
            rest = [i for i, outcome in enumerate(out) if outcome is None]
            if rest:
                searched = isolate(attempt, [items[i] for i in rest], None if disabled else first)
                for i, outcome in zip(rest, searched, strict=True):
                    out[i] = outcome
        # Items refused one by one (found by the search, or named by a v3 batch): a disabled version?
        refused = {known_version(t): o for t, o in zip(items, out, strict=True) if type(o) is KmsRejectedError}
        if explain and refused:
            for version, refusal in refused.items():
                disabled = explain(key_tag, [version], refusal, deadline)
                if disabled:
                    out = [disabled.get(version, o) if type(o) is KmsRejectedError else o for o in out]
        return out  # type: ignore[return-value]  # every index was filled

    def _verify(
        self, key_tag: str, context: str | None, sent: list[str], replies: list[str | RewrapError], deadline: Deadline
    ) -> list[str | RewrapError]:
        """Decrypt old and new tokens and compare digests in memory; plaintext is never kept. A new
        token that KMS refuses to decrypt (a well-formed but wrong reply) fails verification too."""
        pairs = [(old, new) for old, new in zip(sent, replies, strict=True) if isinstance(new, str)]
        old_digests = _digests(self.kms.decrypt(key_tag, [old for old, _ in pairs], context, deadline))
        new_digests = _digests(self._isolated(self.kms.decrypt, key_tag, context, [n for _, n in pairs], deadline))
        mismatched = {old for (old, _), a, b in zip(pairs, old_digests, new_digests, strict=True) if a != b}
        return [
            VerificationError("the re-wrapped token does not decrypt to the original data")
            if old in mismatched
            else new
            for old, new in zip(sent, replies, strict=True)
        ]

    # --- 4. write -----------------------------------------------------------------------------
    def _finish(self, work: _Work, deadline: Deadline, *, outcome: _Rewrapped, dry_run: bool) -> ObjectResult:
        tally = _Tally(work.ref)
        tokens = work.tokens
        try:
            replacements = outcome.replacements((work.key_tag, work.context), tokens)
        except RewrapError as error:
            return tally.count(tokens, {}).failed(error)
        tally.count(tokens, replacements)
        tally.opaque = work.opaque
        if not replacements:
            return tally.result(Status.CURRENT)
        if dry_run:
            return tally.result(Status.WOULD_ROTATE)
        if deadline.expired(WRITE_RESERVE_SECONDS):
            return tally.failed(OutOfTimeError("no time left to write safely"))
        try:
            return tally.result(Status.ROTATED, new_version_id=self._write(work, replacements))
        except RewrapError as error:
            return tally.ended(error)

    def _write(self, work: _Work, replacements: dict[str, str]) -> str | None:
        """One conditional write: the new metadata, and the body in its form when a body token changed.
        Metadata that outgrows S3's 2 KB fails permanently with nothing written; the stamps, which only
        save work, are left out when they would not fit."""
        metadata = work.metadata_with(replacements)
        if metadata_bytes(metadata) > USER_METADATA_LIMIT:
            raise PermanentError(
                f"the rotated metadata ({metadata_bytes(metadata)} bytes) exceeds S3's "
                f"{USER_METADATA_LIMIT}-byte limit; nothing written",
                code="metadata-too-large",
            )
        if not any(t.text in replacements for t in work.found):
            return self.store.replace_metadata(work.ref, work.head, metadata)
        assert work.body is not None
        data = encode_whole(work.form, splice(work.text, work.found, replacements))
        lowest = min(known_version(replacements.get(t, t)) for t in work.tokens)
        stamped = {**metadata, STAMP_VERSION_METADATA: str(lowest), STAMP_SIZE_METADATA: str(len(data))}
        if metadata_bytes(stamped) <= USER_METADATA_LIMIT:
            metadata = stamped
        else:
            metadata.pop(STAMP_VERSION_METADATA, None)
            metadata.pop(STAMP_SIZE_METADATA, None)
        body = ObjectBody(data=data, etag=work.body.etag, tag_count=work.body.tag_count)
        return self.store.put_body(work.ref, work.head, body, metadata)

    # --- large objects ------------------------------------------------------------------------
    def _streams(self, work: _Work) -> bool:
        return work.head.size > self.settings.stream_threshold_bytes

    def _rotate_streamed(self, run: _Runner, work: _Work, deadline: Deadline, dry_run: bool) -> ObjectResult:
        """Stream the body in token-safe segments, memory about one segment. Plain bodies: each segment
        with a token to rotate is uploaded as a new part, unchanged byte ranges are copied server-side.
        Encoded bodies (gzip, UTF-16/32) are decoded, spliced and encoded back part by part; the
        upload is aborted when nothing changed. Metadata tokens go in the same rewrite."""
        tally = _Tally(work.ref)
        group = (work.key_tag, work.context)
        writer: PartWriter | None = None
        try:
            meta = self._rewrap(run, {group: set(work.meta_tokens)}, deadline).replacements(group, work.meta_tokens)
            tally.count(work.meta_tokens, meta)
            metadata = work.metadata_with(meta)
            stream = self.store.open_body(work.ref, work.head)
            if stream is None:
                return tally.result(Status.MISSING)
            try:
                form, text = open_text(work.content_encoding, stream.chunks)
            except ObjectOpaqueError as error:
                if not work.envelope:
                    raise
                tally.opaque = error.reason
                return self._finish_metadata_only(work, tally, metadata, meta, deadline, dry_run)

            def start() -> PartWriter:
                return self.store.start_rewrite(work.ref, work.head, metadata, stream.tag_count)

            segment_bytes = max(self.settings.segment_bytes, -(-work.head.size // MAX_PARTS) + 1)
            encoder = None if form.plain else Encoder(form)
            unchanged: list[tuple[int, int]] = []
            pending = bytearray()
            for offset, segment in token_safe_segments(text, segment_bytes):
                found, malformed = scan(segment)
                if malformed:
                    raise _malformed(malformed, offset, form)
                texts = [t.text for t in found]
                replacements = self._rewrap(run, {group: set(texts)}, deadline).replacements(group, texts)
                tally.count(texts, replacements)
                if encoder is not None:  # re-encode everything; upload only if something changed
                    pending += encoder.feed(splice(segment, found, replacements) if replacements else segment)
                    if not dry_run and len(pending) >= segment_bytes:
                        writer = writer or start()
                        writer.upload(bytes(pending))
                        pending.clear()
                elif not replacements:
                    unchanged.append((offset, offset + len(segment)))
                elif not dry_run:
                    writer = writer or start()
                    _copy_ranges(writer, unchanged)
                    writer.upload(splice(segment, found, replacements))
            if encoder is not None:
                pending += encoder.finish()
            if not tally.tokens:
                return tally.result(Status.NO_TOKENS)
            if not tally.rotated:
                if writer is not None:
                    writer.abort()
                return tally.result(Status.CURRENT)
            if dry_run:
                return tally.result(Status.WOULD_ROTATE)
            if writer is None and encoder is None:  # only metadata tokens changed: a copy onto itself
                return self._finish_metadata_only(work, tally, metadata, meta, deadline, dry_run)
            writer = writer or start()
            if encoder is not None:
                writer.upload(bytes(pending))
            else:
                _copy_ranges(writer, unchanged)
            if deadline.expired(WRITE_RESERVE_SECONDS):
                raise OutOfTimeError("no time left to complete the rewrite safely")
            return tally.result(Status.ROTATED, new_version_id=writer.complete())
        except RewrapError as error:
            if writer is not None:
                writer.abort()
            return tally.ended(error)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def _finish_metadata_only(
        self,
        work: _Work,
        tally: _Tally,
        metadata: dict[str, str],
        replacements: dict[str, str],
        deadline: Deadline,
        dry_run: bool,
    ) -> ObjectResult:
        if not replacements:
            return tally.result(Status.CURRENT)
        if dry_run:
            return tally.result(Status.WOULD_ROTATE)
        if deadline.expired(WRITE_RESERVE_SECONDS):
            raise OutOfTimeError("no time left to write safely")
        return tally.result(Status.ROTATED, new_version_id=self.store.replace_metadata(work.ref, work.head, metadata))


_Group = tuple[str, str | None]  # (key tag, context)


class _Allowance:
    """Bytes that decoded bodies may still take in memory, shared by a wave's threads."""

    def __init__(self, total: int) -> None:
        self.left = total
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if size > self.left:
                return False
            self.left -= size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.left += size


@dataclass
class _Tally:
    """What an object's tokens amount to, accumulated (per segment for streamed bodies)."""

    ref: ObjectRef
    tokens: int = 0
    rotated: int = 0
    versions: set[int] = field(default_factory=set)
    new_versions: set[int] = field(default_factory=set)
    opaque: str | None = None  # the body was opaque; only metadata tokens were seen

    def count(self, tokens: list[str], replacements: dict[str, str]) -> _Tally:
        self.tokens += len(tokens)
        self.versions.update(known_version(t) for t in tokens)
        self.rotated += sum(1 for t in tokens if t in replacements)
        self.new_versions.update(known_version(t) for t in replacements.values())
        return self

    def result(self, status: Status, new_version_id: str | None = None) -> ObjectResult:
        newest = self.new_versions or self.versions
        reason = None
        if self.opaque and status is not Status.MISSING:  # what was done is done, but not all was seen
            status, reason = Status.OPAQUE, self.opaque
        return ObjectResult(
            self.ref,
            status,
            tokens=self.tokens,
            rotated_tokens=self.rotated,
            old_versions=tuple(sorted(self.versions)),
            new_version=max(newest) if newest and status is not Status.MISSING else None,
            new_version_id=new_version_id,
            reason=reason,
        )

    def failed(self, error: RewrapError) -> ObjectResult:
        return replace(self.result(Status.FAILED), status=Status.FAILED, error=error, new_version=None, reason=None)

    def ended(self, error: RewrapError) -> ObjectResult:
        """The result of an object whose processing stopped on ``error``."""
        if error.code == "object-gone":
            return self.result(Status.MISSING)
        return unseen(self.ref, error) or self.failed(error)


@dataclass
class _Rewrapped:
    new: dict[tuple[str, str | None, str], str] = field(default_factory=dict)
    errors: dict[tuple[str, str | None, str], RewrapError] = field(default_factory=dict)

    def replacements(self, group: _Group, tokens: Iterable[str]) -> dict[str, str]:
        """Old → new for the tokens whose version went up; raises the first token's error, if any."""
        out: dict[str, str] = {}
        for token in tokens:
            where = (*group, token)
            if where in self.errors:
                raise self.errors[where]
            new = self.new.get(where)
            if new is not None and known_version(new) > known_version(token):
                out[token] = new
        return out


def _token_groups(works: Iterable[_Work]) -> dict[_Group, set[str]]:
    groups: dict[_Group, set[str]] = defaultdict(set)
    for work in works:
        groups[(work.key_tag, work.context)].update(work.tokens)
    return groups


def _copy_ranges(writer: PartWriter, ranges: list[tuple[int, int]]) -> None:
    """Copy pending unchanged ranges as parts, merging neighbours up to S3's 5 GiB part limit."""
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and merged[-1][1] == start and end - merged[-1][0] <= MAX_COPY_PART_BYTES:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    for start, end in merged:
        writer.copy_range(start, end)
    ranges.clear()


def _digests(values: Sequence[bytes | RewrapError]) -> list[bytes | None]:
    return [hashlib.sha256(v).digest() if isinstance(v, bytes) else None for v in values]


def _malformed(malformed: list[Malformed], offset: int = 0, form: Form | None = None) -> ObjectRejectedError:
    first = malformed[0]
    where = f"byte {offset + first.start}" + (f" of the decoded {form} content" if form and not form.plain else "")
    return ObjectRejectedError(
        f"{len(malformed)} malformed ncpkms token(s); first at {where}: {first.reason}", code="malformed-token"
    )


# Requests a search for refused items may spend beyond the first: about one per item, never more than
# sending each item alone would cost.
ISOLATION_EXTRA_REQUESTS = 8


def isolate(
    attempt: Callable[[list[str]], list[R | RewrapError] | KmsRejectedError],
    items: list[str],
    refusal: KmsRejectedError | None = None,
) -> list[R | RewrapError]:
    """Per item of ``items``: its outcome. ``attempt(part)`` sends ``part`` in one request and answers
    one outcome per item, or the refusal when KMS refused the list as a whole; ``refusal`` is the
    answer already received for all of ``items``.

    A refused list holds at least one refused item; a list that passes holds none (and is re-wrapped
    already, so every request does useful work). The search is generalized binary splitting (Hwang):
    send the next group of 2^a unresolved items, sized for the refusal rate seen so far; halve a
    refused group until its refused item is found. An item fails only when it was refused alone or
    as the last unresolved item of a refused list. A refusal that names no item gives one bit per
    request, so 72 items holding 12 refused ones take about 51 requests (the information bound is 44).
    When the budget is spent the unresolved items fail retryably: a later attempt, with fewer
    neighbours, resolves them."""
    first = refusal or attempt(items)
    if not isinstance(first, KmsRejectedError):
        return first
    out: dict[int, R | RewrapError] = {}
    budget = len(items) + ISOLATION_EXTRA_REQUESTS
    pool = list(range(len(items)))
    refused = passed = 0
    last_refusal = first
    pool_refused = True  # the pool as a whole holds a refused item (it was refused as a whole)

    def send(part: list[int]) -> bool:
        nonlocal budget, last_refusal
        budget -= 1
        answer = attempt([items[i] for i in part])
        if isinstance(answer, KmsRejectedError):
            last_refusal = answer
            return False
        out.update(zip(part, answer, strict=True))
        return True

    if len(items) == 1:
        return [first]
    try:
        while pool and budget > 0:
            rate = (refused + 0.4) / (refused + passed + 4)  # a prior of 1 in 10 before anything is seen
            expected = max(1.0, rate * len(pool))
            size = min(len(pool), 2 ** max(0, int(math.log2(max(1.0, (len(pool) - expected + 1) / expected)))))
            group = pool[:size]
            if not (pool_refused and size == len(pool)) and send(group):
                passed += size
                pool = pool[size:]
                continue
            while len(group) > 1 and budget > 0:  # ``group`` holds a refused item: halve until found
                left = group[: len(group) // 2]
                if send(left):
                    passed += len(left)
                    pool = [i for i in pool if i not in left]
                    group = group[len(group) // 2 :]
                else:
                    group = left
            if len(group) == 1:
                out[group[0]] = last_refusal
                refused += 1
                pool.remove(group[0])
                pool_refused = False
    except RewrapError as error:  # a request-level failure (throttled, out of time, auth): not a refusal
        for i in pool:
            out.setdefault(i, error)
    for i in range(len(items)):
        out.setdefault(i, _unresolved(len(items)))
    return [out[i] for i in range(len(items))]


def _unresolved(count: int) -> RewrapError:
    return RetryableError(
        f"KMS refused a request of {count} items holding this token and the search for the refused ones "
        "ran out of requests; not refused itself, it is retried",
        code="kms-isolation-pending",
    )


class _Runner:
    """Runs a step over many items on the shared pool; a step's RewrapError becomes its outcome."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool

    def each(
        self, step: Callable[[T, Deadline], R], items: Iterable[T], deadline: Deadline
    ) -> list[tuple[T, R | RewrapError]]:
        futures = [(item, self.pool.submit(_guarded, step, item, deadline)) for item in items]
        return [(item, future.result()) for item, future in futures]


def _guarded(step: Callable[[T, Deadline], R], item: T, deadline: Deadline) -> R | RewrapError:
    try:
        return step(item, deadline)
    except RewrapError as error:
        return error
    except Exception as exc:  # a bug must cost a retry, never an object
        log.exception("unexpected error in %s", getattr(step, "__name__", "step"))
        return RetryableError(f"internal error ({type(exc).__name__})", code="internal-error")


def _settle(
    outcomes: Sequence[tuple[Any, _Work | ObjectResult | RewrapError]], results: dict[ObjectRef, ObjectResult]
) -> list[_Work]:
    """Record finished outcomes (results and failures) in ``results``; return the works still in flight."""
    in_flight: list[_Work] = []
    for item, outcome in outcomes:
        if isinstance(outcome, _Work):
            in_flight.append(outcome)
            continue
        ref = item if isinstance(item, ObjectRef) else item.ref
        if isinstance(outcome, ObjectResult):
            results[ref] = outcome
        else:
            results[ref] = unseen(ref, outcome) or ObjectResult(ref, Status.FAILED, error=outcome)
    return in_flight


def _context(value: str | None) -> str | None:
    if not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ObjectRejectedError("ncpkms-context metadata is not base64", code="bad-context") from None
    if len(decoded) > 50:
        raise ObjectRejectedError("ncpkms-context is longer than NCP's 50-byte limit", code="bad-context")
    return value
