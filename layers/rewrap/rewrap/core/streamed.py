"""Objects too large for memory: the body streamed in token-safe segments, memory about one segment.

Plain bodies: each segment with a token to rotate is uploaded as a new part, unchanged byte ranges
are copied server-side. Encoded bodies (gzip, UTF-16/32) are decoded, spliced and encoded back part
by part. The multipart rewrite starts at the first part to write, completes only if the object
still has the ETag read, and is aborted whenever it does not complete. Metadata tokens go in the
same rewrite (or, when only they change, in a metadata-replacing copy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from rewrap.core.forms import Encoder, Form, open_text
from rewrap.core.ports import MAX_COPY_PART_BYTES, MAX_PARTS, ObjectStore, PartWriter
from rewrap.core.results import ObjectResult, Status
from rewrap.core.rewrapping import TokenRewrapper
from rewrap.core.token_segments import token_safe_segments
from rewrap.core.tokens import Found, scan, splice
from rewrap.core.work import WRITE_RESERVE_SECONDS, Tally, Work, malformed_error
from rewrap.deadline import Deadline
from rewrap.errors import ObjectOpaqueError, OutOfTimeError, RewrapError


class Allowance:
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


class StreamedRotation:
    """Rotates one large object at a time, re-wrapping its tokens segment by segment."""

    def __init__(self, store: ObjectStore, kms: TokenRewrapper, segment_bytes: int) -> None:
        self.store = store
        self.kms = kms
        self.segment_bytes = segment_bytes

    def rotate(self, work: Work, deadline: Deadline, dry_run: bool) -> ObjectResult:
        tally = Tally(work.ref, work.key_tag)
        rewrite: _Rewrite | None = None
        try:
            meta = self.kms.replacements(work.group, work.meta_tokens, deadline)
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
                return self.metadata_only(work, tally, metadata, meta, deadline, dry_run)

            def start() -> PartWriter:
                return self.store.start_rewrite(work.ref, work.head, metadata)

            segment_bytes = max(self.segment_bytes, -(-work.head.size // MAX_PARTS) + 1)
            rewrite = (
                _PlainRewrite(start, dry_run) if form.plain else _EncodedRewrite(start, dry_run, form, segment_bytes)
            )
            self._splice(work, form, text, segment_bytes, rewrite, tally, deadline)
            if not (tally.rotated and rewrite.changes_body):
                rewrite.abort()
                rewrite = None
            return self._conclude(work, tally, rewrite, metadata, meta, deadline, dry_run)
        except RewrapError as error:
            if rewrite is not None:
                rewrite.abort()
            return tally.ended(error)
        except BaseException:
            if rewrite is not None:
                rewrite.abort()
            raise

    def _splice(
        self,
        work: Work,
        form: Form,
        text: Iterator[bytes],
        segment_bytes: int,
        rewrite: _Rewrite,
        tally: Tally,
        deadline: Deadline,
    ) -> None:
        """Scan the body segment by segment, re-wrap each segment's tokens and hand it to ``rewrite``."""
        for offset, segment in token_safe_segments(text, segment_bytes):
            found, malformed = scan(segment)
            if malformed:
                raise malformed_error(malformed, offset, form)
            replacements = self.kms.replacements(work.group, found, deadline)
            tally.count(found, replacements)
            rewrite.take(offset, segment, found, replacements)
        rewrite.end()

    def _conclude(
        self,
        work: Work,
        tally: Tally,
        rewrite: _Rewrite | None,
        metadata: dict[str, str],
        meta: dict[str, str],
        deadline: Deadline,
        dry_run: bool,
    ) -> ObjectResult:
        """The result once the body was read; ``rewrite`` is None when the body stays as it is."""
        if not tally.tokens:
            return tally.result(Status.NO_TOKENS)
        if not tally.rotated:
            return tally.result(Status.CURRENT)
        if dry_run:
            return tally.result(Status.WOULD_ROTATE)
        if rewrite is None:  # only metadata tokens changed: a copy onto itself
            return self.metadata_only(work, tally, metadata, meta, deadline, dry_run)
        rewrite.close()
        if deadline.expired(WRITE_RESERVE_SECONDS):
            raise OutOfTimeError("no time left to complete the rewrite safely")
        return tally.result(Status.ROTATED, new_version_id=rewrite.parts().complete())

    def metadata_only(
        self,
        work: Work,
        tally: Tally,
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


class _Rewrite:
    """A streamed body's new parts, going to a multipart rewrite started at the first part written
    (never in a dry run)."""

    def __init__(self, start: Callable[[], PartWriter], dry_run: bool) -> None:
        self._start = start
        self.dry_run = dry_run
        self.writer: PartWriter | None = None

    def parts(self) -> PartWriter:
        if self.writer is None:
            self.writer = self._start()
        return self.writer

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    @property
    def changes_body(self) -> bool:
        """Whether completing the rewrite writes a new body (else only metadata tokens changed)."""
        raise NotImplementedError

    def take(self, offset: int, segment: bytes, found: list[Found], replacements: dict[str, str]) -> None:
        """The next segment of the decoded body, its tokens and their replacements."""
        raise NotImplementedError

    def end(self) -> None:
        """The body has been read to its end."""

    def close(self) -> None:
        """Write what is still pending, before the rewrite completes."""
        raise NotImplementedError


class _PlainRewrite(_Rewrite):
    """Segments with a token to rotate are uploaded; unchanged byte ranges are copied server-side."""

    def __init__(self, start: Callable[[], PartWriter], dry_run: bool) -> None:
        super().__init__(start, dry_run)
        self.unchanged: list[tuple[int, int]] = []
        self.spliced = False

    @property
    def changes_body(self) -> bool:
        return self.spliced

    def take(self, offset: int, segment: bytes, found: list[Found], replacements: dict[str, str]) -> None:
        if not replacements:
            self.unchanged.append((offset, offset + len(segment)))
            return
        self.spliced = True
        if not self.dry_run:
            parts = self.parts()
            copy_ranges(parts, self.unchanged)
            parts.upload(splice(segment, found, replacements))

    def close(self) -> None:
        copy_ranges(self.parts(), self.unchanged)


class _EncodedRewrite(_Rewrite):
    """The decoded body spliced and encoded back into its form, uploaded a part at a time. Every
    byte is re-encoded, so a rotated object always gets a new body."""

    def __init__(self, start: Callable[[], PartWriter], dry_run: bool, form: Form, part_bytes: int) -> None:
        super().__init__(start, dry_run)
        self.encoder = Encoder(form)
        self.part_bytes = part_bytes
        self.pending = bytearray()

    @property
    def changes_body(self) -> bool:
        return True

    def take(self, offset: int, segment: bytes, found: list[Found], replacements: dict[str, str]) -> None:
        self.pending += self.encoder.feed(splice(segment, found, replacements) if replacements else segment)
        if not self.dry_run and len(self.pending) >= self.part_bytes:
            self.parts().upload(bytes(self.pending))
            self.pending.clear()

    def end(self) -> None:
        self.pending += self.encoder.finish()

    def close(self) -> None:
        self.parts().upload(bytes(self.pending))


def copy_ranges(writer: PartWriter, ranges: list[tuple[int, int]]) -> None:
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
