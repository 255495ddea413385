"""``python -m rewrap_local.bench.requests``: S3 requests per rotated object, by operation.

The set of issue 22: 240 small text objects, 4 NDJSON files of 500 tokens and 40 envelopes of 64 KB, no
text suffixes declared, rotated by one container's engine in invocations of 100 objects, on a bucket
that enforces bucket-owner ownership and on a legacy bucket with ACLs; then with 1 in 10 text objects
tagged (a GET's tag count is trusted only once one was confirmed in the bucket). The floor is one GET
and one write per object.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from rewrap.core.ports import ObjectRef
from rewrap_local.stack import local_stack

INVOCATION = 100


def seed(stack: Any, runtime: Any, tagged: bool) -> list[str]:
    s3 = stack.client("s3")
    keys = []
    small = runtime.kms.encrypt(stack.key_tag, [f"s{i}".encode() for i in range(240)])
    for i, token in enumerate(small):
        keys.append(f"text/{i}.env")
        tags = {"Tagging": "team=blue"} if tagged and i % 10 == 0 else {}
        s3.put_object(Bucket=stack.bucket, Key=keys[-1], Body=f"SECRET={token}\n".encode(), **tags)
    for n in range(4):
        rows = runtime.kms.encrypt(stack.key_tag, [f"r{n}-{i}".encode() for i in range(500)])
        keys.append(f"rows/{n}.ndjson")
        body = "".join(json.dumps({"id": i, "secret": t}) + "\n" for i, t in enumerate(rows))
        s3.put_object(Bucket=stack.bucket, Key=keys[-1], Body=body.encode())
    deks = runtime.kms.encrypt(stack.key_tag, [f"k{i}".encode() for i in range(40)])
    for i, dek in enumerate(deks):
        keys.append(f"sealed/{i}.bin")
        s3.put_object(Bucket=stack.bucket, Key=keys[-1], Body=b"\x07" * 65536, Metadata={"dek": dek})
    return keys


def measure(ownership: str, tagged: bool) -> tuple[int, Counter[str]]:
    with local_stack(bucket=f"requests-{ownership.lower()}-{tagged:d}", seed=5) as stack:
        runtime = stack.runtime()
        stack.client("s3").put_bucket_ownership_controls(
            Bucket=stack.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]}
        )
        keys = seed(stack, runtime, tagged)
        stack.kms.rotate(stack.key_tag)
        calls: Counter[str] = Counter()
        runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
        rotated = 0
        for start in range(0, len(keys), INVOCATION):
            refs = [ObjectRef(stack.bucket, k) for k in keys[start : start + INVOCATION]]
            rotated += sum(r.status.value == "rotated" for r in runtime.engine.rotate(refs))
        runtime.kms.http.close()
        return rotated, calls


def main() -> int:
    for ownership, tagged in (("BucketOwnerEnforced", False), ("ObjectWriter", False), ("BucketOwnerEnforced", True)):
        rotated, calls = measure(ownership, tagged)
        total = sum(calls.values())
        by_op = ", ".join(f"{op} {n / rotated:.2f}" for op, n in calls.most_common())
        bucket = ownership + (", 1 in 10 text objects tagged" if tagged else "")
        print(f"{bucket}: {rotated} rotated, {total / rotated:.2f} requests per rotated object (floor 2.00): {by_op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
