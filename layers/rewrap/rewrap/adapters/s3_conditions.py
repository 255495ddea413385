"""What a rewrite is conditional on, so that another writer's change is never reverted, and when the tag
count a read reports can stand in for reading the tags.

**Conditions.** S3's ETag is the body's digest: a writer that copies an object onto itself with new
metadata or a new Content-Type keeps it, so ``If-Match`` alone lets a rewrite restore the old metadata.

- Copies (CopyObject, UploadPartCopy) are conditional on the source's ``Last-Modified`` as read
  (``CopySourceIfUnmodifiedSince``), and a CopyObject on the destination's ETag too (``If-Match``).
  Not ``CopySourceIfMatch``: S3 documents that when it holds, a failing ``CopySourceIfUnmodifiedSince``
  is ignored and the copy made (CopyObject and UploadPartCopy, "x-amz-copy-source-if-match condition
  evaluates to true, and x-amz-copy-source-if-unmodified-since condition evaluates to false ... returns
  200 OK and copies the data"), which is exactly the metadata-only change to catch.
- ``Last-Modified`` has whole seconds, so a change made within the second the object was last modified
  passes that condition. An object read within that second (S3's ``Date``, to the second, no later) is
  read again (HEAD) once the second is over, before it is copied: from then on, any change moves
  ``Last-Modified`` past what was read. The copy path is exact.
- PutObject and CompleteMultipartUpload take only ``If-Match``. A metadata-only change between the read
  and the write goes unseen, so the window is bounded: a PUT more than ``RECHECK_AFTER_SECONDS`` after
  its read, and every multipart completion, reads the head again first. What remains is the window
  between that last read and the write, which ``make bench-path`` measures.

**Tag counts.** A GET or HEAD reports ``x-amz-tagging-count`` when the object has tags, and only to a
caller allowed to read them. So a missing count means "no tags" only in a bucket where rewrap has shown
it may read tags (one GetObjectTagging that answered), and only while the store has never been seen to
leave the count out for an object that has tags; a store seen doing so (an S3 stand-in, say) is asked
for the tags of every object it rewrites from then on. A reported count is never trusted for the tags
themselves: their values come from GetObjectTagging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rewrap.core.ports import ObjectHead
from rewrap.errors import ObjectChangedError
from rewrap.observability import logger

# A PUT this long after its read reads the head again first (a bound on the PutObject path's window).
RECHECK_AFTER_SECONDS = 1.0
# Waited past the second of a fresh object's Last-Modified, for clocks that tick a little apart.
SECOND_MARGIN = 0.05
# At most this long a write waits for the first tag read in its bucket before reading the tags itself.
PROBE_WAIT_SECONDS = 5.0


HeadAgain = Callable[[], ObjectHead | None]


class Recheck:
    """Reads the head again where a write's own conditions cannot see a change (see the module's doc)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep

    def before_copy(self, head: ObjectHead, head_again: HeadAgain) -> None:
        if head.fresh:  # wait until S3's clock has left the second of Last-Modified, then look
            self.sleep(max(0.0, head.read_at + 1 + SECOND_MARGIN - time.monotonic()))
            self.confirm(head, head_again)

    def before_put(self, head: ObjectHead, head_again: HeadAgain) -> None:
        if time.monotonic() - head.read_at > RECHECK_AFTER_SECONDS:
            self.confirm(head, head_again)

    @staticmethod
    def confirm(head: ObjectHead, head_again: HeadAgain) -> None:
        now = head_again()
        if now is None:
            raise ObjectChangedError("object disappeared since it was read", code="object-gone")
        if (now.etag, now.last_modified, now.version_id) != (head.etag, head.last_modified, head.version_id) or (
            now.metadata,
            now.headers,
        ) != (head.metadata, head.headers):
            raise ObjectChangedError("object changed since it was read (another writer); nothing written")


class TagCounts:
    """Per store: the buckets where rewrap may read tags, and whether the store leaves counts out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readable: set[str] = set()
        self._probes: dict[str, threading.Event] = {}  # a first tag read under way in the bucket
        self._omitted = False

    def must_read(self, bucket: str, head: ObjectHead) -> bool:
        """Whether the tags of this object must be read to be restated. The first write in a bucket reads
        them; writes arriving meanwhile wait for its answer (a moment) rather than all reading."""
        if head.tag_count:
            return True
        with self._lock:
            if self._omitted:
                return True
            if bucket in self._readable:
                return False
            probe = self._probes.get(bucket)
            if probe is None:
                self._probes[bucket] = threading.Event()
                return True
        probe.wait(PROBE_WAIT_SECONDS)
        with self._lock:
            return self._omitted or bucket not in self._readable

    def read(self, bucket: str, head: ObjectHead, tags: int | None) -> None:
        """What a GetObjectTagging answered for an object read as ``head``: ``tags`` tags, or None when
        it failed (the next write in the bucket reads them again)."""
        with self._lock:
            if tags is not None:
                self._readable.add(bucket)
            probe = self._probes.pop(bucket, None)
            if tags and not head.tag_count and not self._omitted:
                self._omitted = True
                logger.warning(
                    "S3 left out the tag count of an object that has tags; reading the tags of every object "
                    "rewritten from now on",
                    extra={"bucket": bucket},
                )
        if probe is not None:
            probe.set()
