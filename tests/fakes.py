"""In-memory stand-ins for the ports (``rewrap.core.ports``), for the fast unit tier: a bucket that keeps
ETags and refuses stale conditional writes as S3 does, a key service that re-wraps by bumping the
version, and a queue. They implement the protocols; the adapters' own behaviour is tested against
moto, LocalStack and the emulator in the integration tier."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rewrap.core.ports import BodyStream, Listed, ObjectBody, ObjectHead, ObjectRef, StoredRecord
from rewrap.core.tokens import TOKEN_RE
from rewrap.deadline import Deadline
from rewrap.errors import ObjectChangedError
from rewrap.ncp.signing import Credentials
from rewrap_local.stack import ACCESS_KEY, API_KEY, SECRET_KEY


@dataclass
class StoredObject:
    data: bytes
    metadata: dict[str, str]
    etag: str
    version: str


@dataclass
class MemoryBucket:
    """An ObjectStore over a dict. ``writes`` counts what reached the bucket, ``reads`` the keys of its first
    reads; ``before_write`` lets a test play a concurrent writer between the engine's read and its write."""

    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    writes: int = 0
    reads: list[str] = field(default_factory=list)
    before_write: Any = None
    reports: dict[str, bytes] = field(default_factory=dict)
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self.objects[bucket, key] = StoredObject(data, dict(metadata or {}), _etag(data), str(next(self._versions)))

    def body(self, bucket: str, key: str) -> bytes:
        return self.objects[bucket, key].data

    # --- ObjectStore ---------------------------------------------------------------------------
    def head(self, ref: ObjectRef) -> ObjectHead | None:
        stored = self.objects.get((ref.bucket, ref.key))
        if stored is None:
            return None
        return ObjectHead(
            stored.etag, len(stored.data), dict(stored.metadata), stored.version, checksum=_checksum(stored.data)
        )

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        self.reads.append(ref.key)
        head = self.head(ref)
        if head is None:
            return None
        return head, (self.get_body(ref, head) if head.size <= limit else None)

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        stored = self._current(ref, head)
        return None if stored is None else ObjectBody(stored.data, stored.etag)

    def body_checksum(self, head: ObjectHead, data: bytes) -> str:
        return _checksum(data)

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        return self._write(ref, head, body.data, metadata)

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        stored = self._current(ref, head)
        assert stored is not None
        return self._write(ref, head, stored.data, metadata)

    def open_body(self, ref: ObjectRef, head: ObjectHead, chunk_bytes: int = 1024 * 1024) -> BodyStream | None:
        stored = self._current(ref, head)
        if stored is None:
            return None
        data = stored.data
        return BodyStream(iter([data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]))

    def start_rewrite(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> Any:
        raise NotImplementedError("the unit tier keeps objects below the streaming threshold")

    def list_page(
        self, bucket: str, prefix: str, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[Listed], str | None]:
        keys = sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))
        start = int(continuation_token or 0)
        page = keys[start : start + max_keys]
        listed = [Listed(k, len(self.objects[bucket, k].data), datetime(2026, 1, 1, tzinfo=UTC)) for k in page]
        more = start + max_keys < len(keys)
        return listed, str(start + max_keys) if more else None

    def list_versions_page(
        self, bucket: str, prefix: str, marker: tuple[str, str] | None, max_keys: int = 1000
    ) -> tuple[list[Listed], tuple[str, str] | None]:
        listed, _ = self.list_page(bucket, prefix, None, 1_000_000)
        return listed, None

    def bucket_versioning(self, bucket: str) -> str | None:
        return ""

    def put_new(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.reports[f"{bucket}/{key}"] = data

    def read_record(self, bucket: str, key: str) -> StoredRecord | None:
        stored = self.objects.get((bucket, key))
        return None if stored is None else StoredRecord(stored.data, stored.etag, datetime.now(UTC))

    def put_record(self, bucket: str, key: str, data: bytes, content_type: str, if_match: str | None) -> None:
        stored = self.objects.get((bucket, key))
        if (stored.etag if stored is not None else None) != if_match:
            raise ObjectChangedError("record changed since it was read")
        self.put(bucket, key, data)

    # --- S3's conditions ------------------------------------------------------------------------
    def _current(self, ref: ObjectRef, head: ObjectHead) -> StoredObject | None:
        stored = self.objects.get((ref.bucket, ref.key))
        if stored is not None and stored.etag != head.etag:
            raise ObjectChangedError("object changed since it was read")
        return stored

    def _write(self, ref: ObjectRef, head: ObjectHead, data: bytes, metadata: Mapping[str, str]) -> str:
        if self.before_write is not None:
            self.before_write(ref)
        self._current(ref, head)  # IfMatch: refused when someone wrote in between
        self.put(ref.bucket, ref.key, data, metadata)
        self.writes += 1
        return self.objects[ref.bucket, ref.key].version


@dataclass
class Counts:
    requests: int = 0

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": 0}


class VersionBumpKms:
    """A Rewrapper whose keys are at ``newest``: re-encrypt keeps a token's payload and raises its
    version, decrypt returns the payload. Refuses nothing; counts requests."""

    def __init__(self, newest: int = 2, batch: int = 100) -> None:
        self.newest = newest
        self.batch = batch
        self.counts = Counts()

    @staticmethod
    def token(plaintext: bytes, version: int = 1) -> str:
        return f"ncpkms:v{version}:{base64.b64encode(plaintext).decode()}"

    @property
    def stats(self) -> Counts:
        return self.counts

    def batches(self, ciphertexts: Sequence[str]) -> Iterator[list[str]]:
        items = list(ciphertexts)
        for start in range(0, len(items), self.batch):
            yield items[start : start + self.batch]

    def decrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[bytes]:
        self.counts.requests += 1
        return [base64.b64decode(t.split(":", 2)[2]) for t in ciphertexts]

    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        self.counts.requests += 1
        out = []
        for token in ciphertexts:
            assert TOKEN_RE.fullmatch(token), token
            out.append(f"ncpkms:v{self.newest}:{token.split(':', 2)[2]}")
        return out

    def newest_version(self, key_tag: str, deadline: Deadline | None = None) -> int:
        return self.newest


@dataclass
class MemoryQueue:
    """A RequestQueue and a DeadLetterSink."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    parked: list[tuple[str, str]] = field(default_factory=list)

    def send_requests(
        self,
        bucket: str,
        keys: Sequence[str],
        keys_per_message: int,
        extra: Mapping[str, Any] | None = None,
        chunks: list[list[str]] | None = None,
    ) -> tuple[int, int]:
        sent = [list(keys[i : i + keys_per_message]) for i in range(0, len(keys), keys_per_message)]
        if chunks is not None:
            chunks += sent
        self.requests += [{"bucket": bucket, "keys": chunk, **(extra or {})} for chunk in sent]
        return len(sent), -(-len(sent) // 10)

    def forward(self, body: str, reason: str, source_message_id: str) -> None:
        self.parked.append((body, reason))


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _checksum(data: bytes) -> str:
    """The full-object checksum the bucket reports, as S3 does with ChecksumMode=ENABLED."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(data).digest()).decode()


class StaticCredentials:
    """A credentials source that always answers the same (the emulator's loopback-only keys)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def get(self, *, refresh: bool = False) -> Credentials:
        return self.credentials


SIGNING = StaticCredentials(Credentials(ACCESS_KEY, SECRET_KEY, API_KEY))
