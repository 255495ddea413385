"""S3 faults at the HTTP boundary: botocore hooks on the runtime's S3 client that answer errors, slip a
racing write in, crash an invocation, and enforce the conditions moto ignores."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from .corpus import Corpus


class SimulatedCrash(BaseException):
    """The invocation dies mid-flight. A BaseException, so nothing in rewrap can catch it."""


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def s3_error(url: str, status: int, code: str) -> AWSResponse:
    """An S3 error response, as botocore would have received it."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by the soak</Message><RequestId>soak</RequestId></Error>"
    ).encode()
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
    return AWSResponse(url, status, headers, _Raw(body))


def _bucket_key(url: str) -> tuple[str, str]:
    """(bucket, key) of a path-style URL (what botocore uses for the loopback moto endpoint)."""
    bucket, _, key = urlsplit(url).path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def _etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def _header(request: Any, name: str) -> str | None:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _S3Fault:
    kind: str  # slowdown | precondition | part-failure | overwrite | delete
    ops: frozenset[str]
    remaining: int
    status: int = 503
    code: str = "SlowDown"

    @property
    def conditional_only(self) -> bool:
        """Races and rejected conditions hit only our conditional writes (they carry If-Match)."""
        return self.kind in ("overwrite", "delete", "precondition")


WRITE_OPS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
READ_OPS = frozenset({"HeadObject", "GetObject", "GetObjectTagging"})


class S3Faults:
    """Faults on a runtime's S3 client, injected by botocore event hooks. Thread-safe."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._lock = threading.Lock()
        self._queue: list[_S3Fault] = []
        self._crash_in: int | None = None
        self._crash_op: str | None = None
        self.crashed = False
        self.injected: Counter[str] = Counter()
        self.injected_at: Counter[str] = Counter()  # "<kind> <operation>"
        self.retries = 0
        # LocalStack enforces these conditions itself: there the hooks leave them to it.
        self.emulate_conditions = corpus.stack.backend == "moto"

    def attach(self, client: Any) -> None:
        """Idempotent: hooks are registered once per client (``unique_id``)."""
        client.meta.events.register("before-send.s3", self._before_send, unique_id="rewrap-soak-faults")
        client.meta.events.register("after-call.s3", self._after_call, unique_id="rewrap-soak-retries")

    def add(self, kind: str, ops: frozenset[str], times: int, *, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self._queue.append(_S3Fault(kind, ops, times, status, code))

    def arm_crash(self, after_requests: int, op: str | None = None) -> None:
        """Crash at the ``after_requests``-th S3 request (of ``op`` only, when given)."""
        with self._lock:
            self._crash_in, self._crash_op = after_requests, op

    def revive(self) -> None:
        """A new invocation: the dead sandbox is gone (an armed crash that did not fire stays armed)."""
        with self._lock:
            self.crashed = False

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._crash_in = None
            self.crashed = False

    def _after_call(self, parsed: dict[str, Any], **_: Any) -> None:
        attempts = int(parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
        if attempts:
            with self._lock:
                self.retries += attempts

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        with self._lock:
            if self.crashed or self._crash_now(op):
                raise SimulatedCrash(f"the sandbox died before {op}")
            fault = self._take(op, request)
        if fault is not None:
            if fault.kind in ("overwrite", "delete"):
                self.corpus.race(fault.kind, _bucket_key(request.url)[1])
            else:
                return s3_error(request.url, fault.status, fault.code)
        return self._conditions(op, request) if self.emulate_conditions else None

    def _crash_now(self, op: str) -> bool:
        if self._crash_in is None or self._crash_op not in (None, op):
            return False
        self._crash_in -= 1
        if self._crash_in > 0:
            return False
        self._crash_in = None
        self.crashed = True
        self.injected["invocation:crash"] += 1
        self.injected_at[f"crash {op}"] += 1
        return True

    def _take(self, op: str, request: Any) -> _S3Fault | None:
        for fault in self._queue:
            if op not in fault.ops or (fault.conditional_only and not _header(request, "If-Match")):
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._queue.remove(fault)
            self.injected[f"s3:{fault.kind}"] += 1
            self.injected_at[f"{fault.kind} {op}"] += 1
            return fault
        return None

    def _conditions(self, op: str, request: Any) -> AWSResponse | None:
        """S3's conditional-request semantics where moto ignores them (see the module docstring)."""
        if_match = _header(request, "If-Match")
        if op in ("CopyObject", "CompleteMultipartUpload") and if_match:
            refusal = self._check(request.url, *_bucket_key(request.url), None, if_match)
            if refusal is not None:
                return refusal
        source_match = _header(request, "x-amz-copy-source-if-match")
        since = _header(request, "x-amz-copy-source-if-unmodified-since")
        if op in ("CopyObject", "UploadPartCopy") and (source_match or since):
            source, _, version_id = unquote(_header(request, "x-amz-copy-source") or "").partition("?versionId=")
            bucket, _, key = source.lstrip("/").partition("/")
            since = None if source_match else since  # S3 copies when the ETag matches, whatever Last-Modified says
            return self._check(request.url, bucket, key, version_id or None, source_match, since)
        return None

    def _check(
        self, url: str, bucket: str, key: str, version_id: str | None, expected: str | None, since: str | None = None
    ) -> AWSResponse | None:
        where = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            current = self.corpus.s3.head_object(**where)
        except ClientError:
            return s3_error(url, 404, "NoSuchKey")
        if expected is not None and _etag(current["ETag"]) != _etag(expected):
            return s3_error(url, 412, "PreconditionFailed")
        modified = int(current["LastModified"].timestamp())
        if since is not None and modified > int(parsedate_to_datetime(since).timestamp()):
            return s3_error(url, 412, "PreconditionFailed")  # modified after it was read (to the second)
        return None
