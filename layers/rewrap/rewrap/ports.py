"""What the engine needs from the outside world. Adapters (``objects.S3Store``,
``ncp.client.NcpKmsClient``) implement these; tests may pass their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rewrap.deadline import Deadline


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


@dataclass(frozen=True)
class ObjectBody:
    data: bytes
    etag: str
    tag_count: int = 0


class ObjectStore(Protocol):
    def head(self, ref: ObjectRef) -> ObjectHead | None:
        """None when the object (version) does not exist."""

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        """The body, only if it still has ``head.etag``; None when gone."""

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        """Replace the body if the object still has ``head.etag``; returns the new version id."""

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        """Copy the object onto itself with new user metadata, if it still has ``head.etag``."""


class Rewrapper(Protocol):
    list_limit: int  # bytes of ciphertext one request may carry

    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]: ...
