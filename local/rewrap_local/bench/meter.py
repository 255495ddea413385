"""S3 latency and request/byte counters, injected into every contender's S3 client through botocore
event hooks (the fleet bench meters its SQS clients the same way). Bytes read are the body bytes the
client consumed: a GET answered with a large body that the client closes after the headers counts none."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


class Meter:
    """Injected S3 latency and what a client moved: requests per operation, body bytes read/written."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes_read = 0
        self.bytes_written = 0

    def attach(self, client: Any) -> Any:
        """Count (and delay) every request ``client`` sends, whatever its service; S3 GETs count bytes too."""
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._before_send)
        client.meta.events.register("after-call.s3.GetObject", self._after_get)
        return client

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_read = self.bytes_written = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.requests.values()),
                "ops": dict(sorted(self.requests.items())),
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            }

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        written = 0
        if operation in ("PutObject", "UploadPart"):
            headers = request.headers
            # aws-chunked bodies (flexible checksums) announce the payload size separately.
            written = int(headers.get("x-amz-decoded-content-length") or headers.get("Content-Length") or 0)
        with self._lock:
            self.requests[operation] += 1
            self.bytes_written += written
        if self.latency_s > 0:
            time.sleep(self.latency_s)  # in the calling thread, like a network round trip

    def _after_get(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code < 300 and "Body" in parsed:
            parsed["Body"] = _Counted(parsed["Body"], self._read)

    def _read(self, size: int) -> None:
        with self._lock:
            self.bytes_read += size


class _Counted:
    """A response body that reports the bytes read from it."""

    def __init__(self, body: Any, count: Any) -> None:
        self._body = body
        self._count = count

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._body.read(amt)
        self._count(len(data))
        return data

    def iter_chunks(self, chunk_size: int = 1024) -> Any:
        while chunk := self.read(chunk_size):
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)
