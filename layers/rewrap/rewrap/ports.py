"""What the engine needs from the outside world. Adapters (``objects.S3Store``,
``ncp.client.NcpKmsClient``) implement these; tests may pass their own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rewrap.deadline import Deadline

# S3 limits for multipart uploads.
MAX_PARTS = 10_000
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

    def __str__(self) -> str:
        suffix = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{suffix}"


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD tells us. ``headers`` are the settings a rewrite must restate to preserve them."""

    etag: str
    size: int
    metadata: Mapping[str, str]
    version_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    archived: bool = False  # in an archive tier and not restored: the body cannot be read


@dataclass(frozen=True)
class ObjectBody:
    data: bytes
    etag: str
    tag_count: int = 0


@dataclass
class BodyStream:
    chunks: Iterator[bytes]
    tag_count: int


class PartWriter(Protocol):
    """A multipart rewrite of one object, part by part, in order."""

    def copy_range(self, start: int, end: int) -> None: ...
    def upload(self, data: bytes) -> None: ...
    def complete(self) -> str | None: ...
    def abort(self) -> None: ...


class ObjectStore(Protocol):
    def head(self, ref: ObjectRef) -> ObjectHead | None:
        """None when the object (version) does not exist."""

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        """Head and body in one read; the body only if at most ``limit`` bytes; None when gone."""

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        """The body, only if it still has ``head.etag``; None when gone."""

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        """Replace the body if the object still has ``head.etag``; returns the new version id."""

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        """Copy the object onto itself with new user metadata, if it still has ``head.etag``."""

    def open_body(self, ref: ObjectRef, head: ObjectHead) -> BodyStream | None:
        """The body as a stream of chunks, only if it still has ``head.etag``; None when gone."""

    def start_rewrite(
        self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str], tag_count: int
    ) -> PartWriter:
        """A multipart rewrite that completes only if the object still has ``head.etag``."""


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
