"""What the core (engine, service, sweep, census, reports) needs from the outside world. The
adapters implement these: ``objects.S3Store`` (objects, listings, reports), ``ncp.client.NcpKmsClient``
(re-wrapping, key versions, request statistics), ``queues.RotateQueue`` and ``queues.DeadLetters``.
``rewrap.app.runtime`` is the only place that builds adapters; tests may pass their own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rewrap.deadline import Deadline

# S3 limits for multipart uploads.
MAX_PARTS = 10_000
# Every queue's MaximumMessageSize in the template, SQS's 256 KiB: the body and the attributes count towards it.
QUEUE_MESSAGE_BYTES = 262_144
# A queue message body rewrap writes, rotate request or parked message, stays below that, leaving room for its
# attributes.
MESSAGE_LIMIT_BYTES = 250_000
MAX_COPY_PART_BYTES = 5 * 1024**3
# S3's limit on user metadata: UTF-8 bytes of every name (without x-amz-meta-) and value, summed.
USER_METADATA_LIMIT = 2048


def metadata_bytes(metadata: Mapping[str, str]) -> int:
    return sum(len(name.encode()) + len(value.encode()) for name, value in metadata.items())


@dataclass(frozen=True, order=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None = None
    # The key exactly as an event spelled it, when decoding it gave ``key``: the engine reads this one when no
    # object has the decoded key (keys with ``%`` or ``+`` in their names). Not part of the ref's identity.
    as_sent: str | None = field(default=None, compare=False)

    def sent(self) -> ObjectRef | None:
        """The object the event named as sent, when that differs from this one."""
        return None if self.as_sent is None else ObjectRef(self.bucket, self.as_sent, self.version_id)

    def __str__(self) -> str:
        suffix = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{suffix}"


@dataclass(frozen=True)
class ObjectHead:
    """What a read (HEAD or GET) tells us. ``headers`` are the settings a rewrite must restate to preserve
    them; the fields after ``archived`` are what the store needs to know whether the object is still as
    read, and how its tags are kept."""

    etag: str
    size: int
    metadata: Mapping[str, str]
    version_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    archived: bool = False  # in an archive tier and not restored: the body cannot be read
    last_modified: datetime | None = None
    read_at: float = 0.0  # time.monotonic() when the answer arrived
    fresh: bool = False  # read within the second it was last modified (a date condition cannot see that second)
    tag_count: int | None = None  # None: the read did not report one
    checksum: str | None = None  # the full-object checksum the store reported, "ALGORITHM:base64"


@dataclass(frozen=True)
class ObjectBody:
    data: bytes
    etag: str
    checksum: str | None = None  # for a body to write: the checksum the store is to verify and keep
    head: ObjectHead | None = None  # what the GET said of the object besides its body, when known


@dataclass(frozen=True)
class Listed:
    """One entry of a bucket listing."""

    key: str
    size: int
    last_modified: datetime
    version_id: str | None = None  # set by list_versions_page only
    is_latest: bool = True
    archived: bool = False  # GLACIER / DEEP_ARCHIVE and not restored (list_page only)


@dataclass(frozen=True)
class StoredRecord:
    """One of rewrap's own small objects (a sweep checkpoint), as read: its body, its ETag for a
    conditional replace, and when S3 stored it (S3's clock, to the second)."""

    data: bytes
    etag: str
    last_modified: datetime


@dataclass
class BodyStream:
    chunks: Iterator[bytes]


class PartWriter(Protocol):
    """A multipart rewrite of one object, part by part, in order."""

    def copy_range(self, start: int, end: int) -> None: ...
    def upload(self, data: bytes) -> None: ...
    def complete(self) -> str | None: ...
    def abort(self) -> None: ...


# The census's readers take a body up to this size with its head, in one GET; larger ones are read again and
# streamed. (The engine takes bodies up to its streaming size, while its memory allowance holds them.)
SINGLE_READ_BYTES = 1024 * 1024


class ObjectStore(Protocol):
    def head(self, ref: ObjectRef) -> ObjectHead | None:
        """None when the object (version) does not exist."""

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        """Head and body in one read; the body only if at most ``limit`` bytes; None when gone."""

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        """The body, only if it still has ``head.etag``; None when gone."""

    def body_checksum(self, head: ObjectHead, data: bytes) -> str:
        """The full-object checksum the store will report for ``data`` written over this object
        ("ALGORITHM:base64"; pass it in the ``ObjectBody`` to ``put_body``)."""

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        """Replace the body if the object still has ``head.etag``; returns the new version id."""

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        """Copy the object onto itself with new user metadata, if it still has ``head.etag``."""

    def open_body(self, ref: ObjectRef, head: ObjectHead, chunk_bytes: int = 1024 * 1024) -> BodyStream | None:
        """The body as a stream of chunks, only if it still has ``head.etag``; None when gone."""

    def start_rewrite(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> PartWriter:
        """A multipart rewrite that completes only if the object still has ``head.etag``."""

    # listings (the sweep and the census) and reports of our own
    def list_page(
        self, bucket: str, prefix: str, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[Listed], str | None]:
        """One page of the listing and the token of the next page (None at the end)."""

    def list_versions_page(
        self, bucket: str, prefix: str, marker: tuple[str, str] | None, max_keys: int = 1000
    ) -> tuple[list[Listed], tuple[str, str] | None]:
        """One page of object versions, current and noncurrent."""

    def bucket_versioning(self, bucket: str) -> str | None:
        """ "Enabled", "Suspended", "" (never enabled), or None when S3 will not say."""

    def put_new(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Write an object of our own (a report), never over an existing one."""

    def read_record(self, bucket: str, key: str) -> StoredRecord | None:
        """One of our own small objects with its ETag and S3's time of writing it; None when absent."""

    def put_record(self, bucket: str, key: str, data: bytes, content_type: str, if_match: str | None) -> None:
        """Replace one of our own objects only if it still has ETag ``if_match`` (None: only if it does not
        exist yet); ``ObjectChangedError`` when another writer got there first."""


class Rewrapper(Protocol):
    def batches(self, ciphertexts: Sequence[str]) -> Iterator[list[str]]:
        """Consecutive groups that fit one KMS request (the API generation's list or item limit)."""
        ...

    def decrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[bytes]: ...

    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        """New tokens in input order; ``errors.PartialBatchError`` carries per-item outcomes when only
        some items failed."""
        ...


class RequestQueue(Protocol):
    """Where the sweep sends rotate requests."""

    def send_requests(
        self,
        bucket: str,
        keys: Sequence[str],
        keys_per_message: int,
        extra: Mapping[str, Any] | None = None,
        chunks: list[list[str]] | None = None,
    ) -> tuple[int, int]:
        """Send the keys as requests; returns (messages, API calls). ``chunks``, when given,
        receives the keys of each message in order."""
        ...


class DeadLetterSink(Protocol):
    """Where a permanently failed message is parked with its reason."""

    def forward(self, body: str, reason: str, source_message_id: str) -> None: ...


class Notifier(Protocol):
    """Where a run's verdict is announced (the stack's alarm topic)."""

    def notify(self, subject: str, message: str, attributes: Mapping[str, str]) -> None: ...


class KeyVersions(Protocol):
    def newest_version(self, key_tag: str, deadline: Deadline | None = None) -> int: ...


@dataclass(frozen=True)
class VersionState:
    version: int
    enabled: bool
    changed_ms: int | None = None  # when its state last changed, where NCP tells
    created_ms: int | None = None  # when the rotation made it, where NCP tells


@dataclass(frozen=True)
class KeyState:
    """A key as its management API shows it: its own state, its current version and each version's state."""

    key_tag: str
    status: str  # NCP's word: ENABLE(D), DISABLE(D), REVOKE(D)
    current_version: int
    versions: Mapping[int, VersionState]

    @property
    def enabled(self) -> bool:
        return self.status in ("ENABLE", "ENABLED")

    def states(self) -> dict[int, str]:
        return {v: "enabled" if s.enabled else "disabled" for v, s in sorted(self.versions.items())}


@dataclass(frozen=True)
class KeyActivity:
    """One entry of the key's activity history (it names no key version)."""

    time_ms: int
    action: str
    succeeded: bool | None
    requestor: str
    ip: str
    opens_ciphertext: bool  # a decrypt, re-encrypt or verify: what a disabled version refuses


class KeyManager(Protocol):
    """Reads and changes a key's version states, and reads its activity history (``adapters.ncp_kms``).
    Raises ``errors.KeyManagementUnavailableError`` where these credentials cannot manage the key."""

    def describe(self, key_tag: str) -> str:
        """Which API and host manage the key, in one line."""

    def state(self, key_tag: str) -> KeyState: ...

    def set_version(self, key_tag: str, version: int, *, enable: bool) -> VersionState: ...

    def activities(self, key_tag: str, since_ms: int, until_ms: int) -> list[KeyActivity]:
        """The entries within the period that have arrived, newest first."""


class RequestStats(Protocol):
    def snapshot(self) -> dict[str, int]: ...


class CountedRewrapper(Rewrapper, Protocol):
    """A rewrapper that counts its requests (the metrics of an invocation)."""

    @property
    def stats(self) -> RequestStats: ...
