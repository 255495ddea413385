"""S3 faults at the HTTP boundary: botocore hooks on the runtime's S3 client that answer errors, slip a
racing write in, crash an invocation, and enforce the conditions moto ignores."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

from ..s3_conditions import CopyConditions, bucket_key, header
from .application import RACERS, Application
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


def _conditional(request: Any) -> bool:
    """Whether rewrap sent ``request`` on the condition that the object is still what it read."""
    names = ("If-Match", "x-amz-copy-source-if-match", "x-amz-copy-source-if-unmodified-since")
    return any(header(request, name) for name in names)


@dataclass
class _S3Fault:
    kind: str  # slowdown | precondition | part-failure | overwrite | delete | app:rewrite | app:metadata
    ops: frozenset[str]
    remaining: int
    status: int = 503
    code: str = "SlowDown"
    any_request: bool = False

    @property
    def conditional_only(self) -> bool:
        """Races and rejected conditions hit only our requests conditional on what was read (writes, and a GET
        after a HEAD), unless told otherwise."""
        return not self.any_request and self.kind in ("overwrite", "delete", "precondition", *RACERS)


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
        # S3's copy and completion conditions where the backend ignores them (all on moto; on LocalStack
        # only UploadPartCopy's time condition).
        self.conditions = CopyConditions(corpus.s3, s3_error, source_time_only=corpus.stack.backend != "moto")
        self.application: Application | None = None  # the writer of the ``app:`` racers

    def attach(self, client: Any) -> None:
        """Idempotent: hooks are registered once per client (``unique_id``)."""
        client.meta.events.register("before-send.s3", self._before_send, unique_id="rewrap-soak-faults")
        client.meta.events.register("after-call.s3", self._after_call, unique_id="rewrap-soak-retries")

    def add(
        self,
        kind: str,
        ops: frozenset[str],
        times: int,
        *,
        status: int = 503,
        code: str = "SlowDown",
        any_request: bool = False,
    ) -> None:
        with self._lock:
            self._queue.append(_S3Fault(kind, ops, times, status, code, any_request))

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
                self.corpus.race(fault.kind, bucket_key(request.url)[1])
            elif fault.kind in RACERS and self.application is not None:
                self.application.race(fault.kind, bucket_key(request.url)[1])
            else:
                return s3_error(request.url, fault.status, fault.code)
        return self.conditions.refusal(op, request)

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
            if op not in fault.ops or (fault.conditional_only and not _conditional(request)):
                continue
            if fault.kind in RACERS and not (
                self.application and self.application.wants(fault.kind, bucket_key(request.url)[1])
            ):
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._queue.remove(fault)
            self.injected[fault.kind if ":" in fault.kind else f"s3:{fault.kind}"] += 1
            self.injected_at[f"{fault.kind} {op}"] += 1
            return fault
        return None
