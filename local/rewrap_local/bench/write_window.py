"""``python -m rewrap_local.bench.write_window``: how long a text object's PutObject path is open to a
metadata-only change by another writer.

PutObject's If-Match checks the ETag only, and a writer that copies the object onto itself with new
metadata keeps the ETag; such a change made after rewrap read the object and before its write is
overwritten. The window is from the last read that saw the object's metadata as the write restates
it (the body's GET, checked against the HEAD; or the single GET of a known-text object) until the
write is sent. Measured here on moto and the NCP emulator, per batch size
and KMS latency, with the engine as it runs in the Lambda function.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

from rewrap.adapters.s3 import S3Store
from rewrap.core.ports import ObjectHead, ObjectRef
from rewrap_local.stack import local_stack

CASES = ((1, 0.02), (250, 0.02), (250, 0.2))  # (objects in one invocation, KMS latency in s)


class TimedStore(S3Store):
    """The real S3 adapter, noting when each object's head was read and when its body write went out."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.read_at: dict[str, float] = {}
        self.windows: list[float] = []
        self._lock = threading.Lock()

    def head(self, ref: ObjectRef) -> ObjectHead | None:
        head = super().head(ref)
        self.read_at[ref.key] = time.monotonic()
        return head

    def read_small(self, ref: ObjectRef, limit: int) -> Any:
        read = super().read_small(ref, limit)
        self.read_at[ref.key] = time.monotonic()
        return read

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> Any:
        body = super().get_body(ref, head)  # the engine checks the GET's metadata against the HEAD's
        self.read_at[ref.key] = time.monotonic()
        return body

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: Any, metadata: Any) -> str | None:
        with self._lock:
            self.windows.append(time.monotonic() - self.read_at[ref.key])
        return super().put_body(ref, head, body, metadata)


def measure(objects: int, kms_latency: float) -> list[float]:
    with local_stack(bucket=f"window-{objects}-{int(kms_latency * 1000)}", seed=3) as stack:
        runtime = stack.runtime()
        s3 = stack.client("s3")
        tokens = runtime.kms.encrypt(stack.key_tag, [f"s{i}".encode() for i in range(objects)])
        for i, token in enumerate(tokens):
            s3.put_object(Bucket=stack.bucket, Key=f"o/{i}.env", Body=f"K={token}\n".encode())
        stack.kms.rotate(stack.key_tag)
        stack.kms.set_latency(kms_latency)
        store = runtime.engine.store = TimedStore(runtime.s3)
        results = runtime.engine.rotate([ObjectRef(stack.bucket, f"o/{i}.env") for i in range(objects)])
        assert all(r.status.value == "rotated" for r in results), {r.status for r in results}
        runtime.kms.http.close()
        return store.windows


def main() -> int:
    print("PutObject path: read -> write, per object (moto server, NCP emulator, default settings)")
    print(f"{'objects':>8} {'KMS latency':>12} {'median':>9} {'p95':>9} {'max':>9}")
    for objects, latency in CASES:
        windows = sorted(measure(objects, latency))
        p95 = windows[min(len(windows) - 1, int(len(windows) * 0.95))]
        print(
            f"{objects:>8} {latency * 1000:>10.0f}ms {statistics.median(windows) * 1000:>7.0f}ms"
            f" {p95 * 1000:>7.0f}ms {windows[-1] * 1000:>7.0f}ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
