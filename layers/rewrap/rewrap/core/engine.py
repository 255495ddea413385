"""The rotation engine: from object references to per-object results.

One call handles every object of an invocation together:
1. GET each object (in parallel): one read gives the head and, up to the single-read size, the body.
   Scan its user metadata (``metadata``): an envelope holds tokens in metadata values (a whole value
   or inside one, ``alg=A256GCM;dek=ncpkms:v1:…``). An event key that decodes to no object is read
   as the event sent it (``ObjectRef.as_sent``), and the object found goes on under that key.
2. Read bodies in memory-bounded waves, decode their form (gzip, UTF-16/32 with BOM; see
   ``forms``) and scan them for tokens. A body the scanner cannot read is ``opaque``, an object S3
   will not give us ``unreadable``: both reported with the reason, never ``no-tokens``. An envelope's
   body that holds no token is let go once scanned: its write is a copy, and its wave needs no room.
3. Re-wrap the tokens of all objects in as few KMS requests as the list limit allows, grouped by
   (key tag, context), skipping tokens already at the newest version known to this container
   (``rewrapping``).
4. Write back only objects where a token's version went up, conditionally on what was read: body
   (in its form) and metadata together in one write.
Objects too large for a wave are streamed instead (``streamed``). An object is either rotated
correctly or left untouched; each yields exactly one result (``results``).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rewrap.core.chunks import chunk_by_size
from rewrap.core.config import Settings
from rewrap.core.forms import encode_whole, open_text
from rewrap.core.gathering import CHUNK_OBJECTS_PER_THREAD, Memory, Round
from rewrap.core.metadata import KEY_TAG_METADATA, STAMP_METADATA, context_of, scan_metadata, stamped_version, stamps
from rewrap.core.ports import (
    USER_METADATA_LIMIT,
    ObjectBody,
    ObjectHead,
    ObjectRef,
    ObjectStore,
    Rewrapper,
    metadata_bytes,
)
from rewrap.core.results import UNSEEN, ObjectResult, Status, unseen
from rewrap.core.rewrapping import Rewrapped, TokenRewrapper, VersionCache, token_groups
from rewrap.core.runner import Pool, Runner
from rewrap.core.streamed import Allowance, StreamedRotation
from rewrap.core.tokens import scan, splice
from rewrap.core.work import WRITE_RESERVE_SECONDS, Tally, Work, malformed_error
from rewrap.deadline import Deadline
from rewrap.errors import (
    BucketNotAllowedError,
    ConfigError,
    ObjectChangedError,
    ObjectOpaqueError,
    ObjectRejectedError,
    OutOfTimeError,
    PermanentError,
    RewrapError,
)

# What callers import from here, besides the engine itself.
__all__ = ["UNSEEN", "Engine", "ObjectResult", "Status", "VersionCache"]


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

    def rotate(
        self, refs: Sequence[ObjectRef], *, deadline: Deadline | None = None, dry_run: bool | None = None
    ) -> list[ObjectResult]:
        """One result per reference, in order (a reference given twice is processed once)."""
        deadline = deadline or Deadline(None)
        dry_run = self.settings.dry_run if dry_run is None else dry_run
        unique = list(dict.fromkeys(refs))
        results: dict[ObjectRef, ObjectResult] = {}
        read_as: dict[ObjectRef, ObjectRef] = {}  # a reference whose object was found under the key as sent
        started: set[ObjectRef] = set()  # the objects a work was started for, by the reference read
        pool = Pool(self.settings.concurrency, "rewrap")
        finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewrap-finish")
        with pool, finisher:
            run = Runner(pool)
            kms = TokenRewrapper(self.kms, self.versions, run, verify=self.settings.verify)
            streamed: list[Work] = []
            finishing: Future[list[Work]] | None = None
            gathering: Round | None = None
            step = self.settings.concurrency * CHUNK_OBJECTS_PER_THREAD
            for start in range(0, len(unique), step):
                # read while the round before is re-wrapped and written: the pool never idles on KMS
                gathering = gathering or Round(Memory(self.memory_budget_bytes), run, kms, deadline, dry_run, results)
                inspect = functools.partial(self._inspect, memory=gathering.memory)
                inspected = run.each(inspect, unique[start : start + step], deadline)
                works = _new_works(inspected, results, read_as, started, gathering.memory)
                gathering.add(works, self.versions)
                if start + step < len(unique) and not gathering.full(self.kms):
                    continue
                if finishing is not None:
                    streamed += finishing.result()
                finishing, gathering = finisher.submit(self._finish_round, gathering), None
            if finishing is not None:
                streamed += finishing.result()
            streaming = StreamedRotation(self.store, kms, self.settings.segment_bytes)
            for work in streamed:
                results[work.ref] = streaming.rotate(work, deadline, dry_run)
        return [results[read_as.get(ref, ref)] for ref in refs]

    def _finish_round(self, gathered: Round) -> list[Work]:
        """Re-wrap and write back a round of read objects (``core.gathering``), in waves whose bodies fit the
        memory budget; returns the works to stream."""
        run, deadline, results = gathered.run, gathered.deadline, gathered.results
        streamed = [w for w in gathered.works if self._streams(w)]
        for wave in self._waves([w for w in gathered.works if not self._streams(w)]):
            # decoded gzip/UTF-16 bodies share what the wave's raw bodies leave of the budget
            decoded = Allowance(self._wave_budget - sum(w.wave_bytes for w in wave))
            load = functools.partial(self._load_body, decoded=decoded)
            ready = _settle(run.each(load, wave, deadline, first=True), results)
            streamed += [w for w in ready if w.restream]
            ready = [w for w in ready if not w.restream]
            outcome = gathered.kms.rewrap(token_groups(ready), deadline)
            finish = functools.partial(self._finish, outcome=outcome, dry_run=gathered.dry_run)
            _settle(run.each(finish, ready, deadline, first=True), results)
            for work in ready:  # ``works`` outlives the wave: let its bodies go, or waves bound nothing
                work.body, work.text, work.found = None, b"", []
        return streamed

    # --- 1. inspect -----------------------------------------------------------------------------
    def _inspect(self, ref: ObjectRef, deadline: Deadline, *, memory: Memory) -> Work | ObjectResult:
        if not self.settings.bucket_allowed(ref.bucket):
            raise BucketNotAllowedError(f"bucket {ref.bucket!r} is not in REWRAP_BUCKETS")
        if deadline.expired(WRITE_RESERVE_SECONDS):
            raise OutOfTimeError("invocation ran out of time before the object was read")
        # a body up to the streaming size comes with its head while the round's allowance holds it
        limit = min(self.settings.stream_threshold_bytes, memory.early.left)
        read = self.store.read_small(ref, limit)
        sent = ref.sent()
        if read is None and sent is not None:  # no object has the decoded key: the event may name it as sent
            ref, read = sent, self.store.read_small(sent, limit)
        if read is None:
            return ObjectResult(ref, Status.MISSING)
        head, body = read
        if body is not None:  # past the allowance by at most one read per thread: a bound, not a race
            memory.early.take(len(body.data))
        outcome: Work | ObjectResult | None = None
        try:
            outcome = self._inspected(ref, head, body, memory)
            return outcome
        finally:
            if body is not None and not (isinstance(outcome, Work) and outcome.body is body):
                memory.early.give(len(body.data))  # not held until its wave

    def _inspected(
        self, ref: ObjectRef, head: ObjectHead, body: ObjectBody | None, memory: Memory
    ) -> Work | ObjectResult:
        """What the first read tells: a result already, or the work still to do."""
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
        work = Work(ref, head, key_tag, context_of(metadata))
        scanned = scan_metadata(metadata)
        work.envelope = scanned.tokens
        if scanned.malformed:
            name, first = scanned.malformed[0]
            raise ObjectRejectedError(
                f"metadata {name!r} holds a malformed ncpkms token: {first.reason}", code="malformed-token"
            )
        if head.size == 0:
            return work if scanned.envelope else ObjectResult(ref, Status.NO_TOKENS)
        if head.size > self.settings.max_object_bytes:
            raise ObjectRejectedError(
                f"object is {head.size} bytes, above REWRAP_MAX_OBJECT_BYTES ({self.settings.max_object_bytes})",
                code="too-large",
            )
        stamp = stamped_version(metadata, head.checksum)
        if stamp is not None and all(self.versions.is_current(key_tag, v) for v in self._versions(stamp, work)):
            lowest = min(self._versions(stamp, work))
            return ObjectResult(ref, Status.CURRENT, old_versions=(lowest,), new_version=lowest, key_tag=key_tag)
        if body is not None:
            return self._take_body(work, body, memory.decoded)
        return work

    @staticmethod
    def _versions(stamp: int, work: Work) -> list[int]:
        """The versions a stamped object holds: the body's lowest (its stamp) and the metadata's."""
        return [stamp, *(t.version for t in work.meta_tokens)]

    # --- 2. read ------------------------------------------------------------------------------
    def _waves(self, works: list[Work]) -> Iterator[list[Work]]:
        """Groups whose bodies fit the memory budget together."""
        size = operator.attrgetter("wave_bytes")
        return chunk_by_size(sorted(works, key=size), self._wave_budget, size)

    def _load_body(self, work: Work, deadline: Deadline, *, decoded: Allowance) -> Work | ObjectResult:
        if not work.body_unread:
            return work
        body = self.store.get_body(work.ref, work.head)
        if body is None:
            return ObjectResult(work.ref, Status.MISSING)
        if body.head is not None and _rewritten(work.head, body.head):
            raise ObjectChangedError("object's metadata changed between its first read and its GET; read again later")
        return self._take_body(work, body, decoded)

    def _take_body(self, work: Work, body: ObjectBody, decoded: Allowance) -> Work | ObjectResult:
        try:
            form, chunks = open_text(work.content_encoding, [body.data])
            if form.plain:
                text = body.data
            else:  # a small compressed body may decode to a large one: past the budget, stream it
                parts, size = [], 0
                for part in chunks:
                    parts.append(part)
                    size += len(part)
                    if size > self.settings.stream_threshold_bytes or not decoded.take(len(part)):
                        decoded.give(size - len(part))
                        work.restream = True
                        return work
                text = b"".join(parts)
        except ObjectOpaqueError as error:
            if not work.envelope:
                raise
            work.opaque = error.reason  # rotate what the metadata holds; the body stays as it is
            work.clear_body = True
            return work
        found, malformed = scan(text)
        if malformed:
            raise malformed_error(malformed, form=form)
        if not found and not work.envelope:
            return ObjectResult(work.ref, Status.NO_TOKENS)
        if not found:  # an envelope: its write copies the body, so its wave needs no room for it
            work.clear_body = True
            return work
        work.body, work.form, work.text, work.found = body, form, text, found
        return work

    @property
    def _wave_budget(self) -> int:
        """A wave's bodies, raw and decoded: what the next round's bodies read with their heads leave."""
        return self.memory_budget_bytes - self.memory_budget_bytes // 4

    def _streams(self, work: Work) -> bool:
        return work.head.size > self.settings.stream_threshold_bytes

    # --- 4. write (3, the re-wrap, is ``rewrapping``) --------------------------------------------
    def _finish(self, work: Work, deadline: Deadline, *, outcome: Rewrapped, dry_run: bool) -> ObjectResult:
        tally = Tally(work.ref, work.key_tag)
        tokens = work.tokens
        try:
            replacements = outcome.replacements(work.group, tokens)
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
            lowest = tally.lowest_after(tokens, replacements)
            return tally.result(Status.ROTATED, new_version_id=self._write(work, replacements, lowest))
        except RewrapError as error:
            return tally.ended(error)

    def _write(self, work: Work, replacements: dict[str, str], lowest: int) -> str | None:
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
        checksum = self.store.body_checksum(work.head, data)
        unstamped = {name: value for name, value in metadata.items() if name not in STAMP_METADATA}
        stamped = {**unstamped, **stamps(lowest, checksum)}
        metadata = stamped if metadata_bytes(stamped) <= USER_METADATA_LIMIT else unstamped
        body = ObjectBody(data=data, etag=work.body.etag, checksum=checksum)
        return self.store.put_body(work.ref, work.head, body, metadata)


def _rewritten(head: ObjectHead, since: ObjectHead) -> bool:
    """Whether the object was written between two reads with the same ETag (a metadata-only self-copy): a
    body too large to come with its head is read again, and that GET shows a change made since the first."""
    return head.metadata != since.metadata or head.last_modified != since.last_modified


def _new_works(
    inspected: Sequence[tuple[ObjectRef, Work | ObjectResult | RewrapError]],
    results: dict[ObjectRef, ObjectResult],
    read_as: dict[ObjectRef, ObjectRef],
    started: set[ObjectRef],
    memory: Memory,
) -> list[Work]:
    """The works a chunk's first reads leave to do. A reference read under its key as sent goes in ``read_as``,
    as its work's result is recorded under that key; should that object be in flight already (the invocation
    names it exactly too), it is done once, and both references get its result."""
    for ref, outcome in inspected:
        if isinstance(outcome, Work) and outcome.ref != ref:
            read_as[ref] = outcome.ref
    works = []
    for work in _settle(inspected, results):
        if work.ref in started:
            if work.body is not None:
                memory.early.give(len(work.body.data))
            continue
        started.add(work.ref)
        works.append(work)
    return works


def _settle(
    outcomes: Sequence[tuple[Any, Work | ObjectResult | RewrapError]], results: dict[ObjectRef, ObjectResult]
) -> list[Work]:
    """Record finished outcomes (results and failures) in ``results``; return the works still in flight."""
    in_flight: list[Work] = []
    for item, outcome in outcomes:
        if isinstance(outcome, Work):
            in_flight.append(outcome)
            continue
        ref = item if isinstance(item, ObjectRef) else item.ref
        if isinstance(outcome, ObjectResult):
            results[ref] = outcome
        else:
            results[ref] = unseen(ref, outcome) or ObjectResult(ref, Status.FAILED, error=outcome)
    return in_flight
