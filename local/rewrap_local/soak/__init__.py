"""Fault-injection soak: objects of every kind rotated through the real rotate handler (SQS batches
and S3 Batch Operations) while faults are injected, then re-run until converged. After every run
each object is checked against its original: its tokens decrypt (through the emulator) to the same
plaintext, every other byte, header, metadata value and tag is unchanged, an object deleted by a
racing writer stays deleted and a racing writer's content is kept.

    python -m rewrap_local.soak [--objects N] [--rounds R] [--seed S]

Faults are injected where they really happen:

* KMS: the emulator's fault queue (every kind; ``corrupt`` is caught because the soak runs with
  REWRAP_VERIFY=true) and the NCP secret rotated mid-run (new value in Secrets Manager, new access
  key registered in the emulator, the old one removed);
* S3: botocore ``before-send`` hooks on the runtime's own S3 client answer 503 SlowDown, 412 or a
  failed part, or slip a concurrent overwrite or delete (through another client) in before our
  conditional write goes out;
* the invocation: a crash raised at a random S3 request, after which nothing more of that
  invocation reaches S3 (the sandbox died; a multipart upload is left behind, never aborted), and
  contexts with little remaining time while KMS is slow;
* Secrets Manager: unreachable (a cold container whose endpoint refuses connections) or a
  malformed secret (invalid JSON, or JSON without secretKey), fixed again after the run.

moto 5.2.5 ignores ``If-Match`` on CopyObject and CompleteMultipartUpload, ``x-amz-copy-source-if-match``
on UploadPartCopy and ``x-amz-copy-source-if-unmodified-since`` on both copies; the hooks enforce S3's
documented semantics for those requests (412 PreconditionFailed, 404 NoSuchKey), so races are exercised on
every write path.

The application next door (``application.py``) writes the objects too, keeping their metadata as SDK
"update" helpers do: it rewrites bodies and updates metadata just before rewrap's requests, and once a round
writes back tokens it cached before the rotation under the stamps rewrap left.

Rounds alternate: faults one kind at a time on disjoint slices of the objects, then random mixes.
Each round starts with a key rotation, runs its phases, then converges: retryable failures come
back by themselves (SQS redelivery, Batch Operations retries), permanent ones are re-run after the
cause is fixed (dead-letter queue redrive, a job on the failed tasks), exactly as an operator would.
"""

from .cli import main
from .harness import Soak, SoakConfig, run_soak
from .plan import FAULT_KINDS, KINDS, SOAK_ENVIRONMENT
from .report import SoakReport
from .s3faults import READ_OPS, WRITE_OPS, SimulatedCrash, s3_error

__all__ = [
    "FAULT_KINDS",
    "KINDS",
    "READ_OPS",
    "SOAK_ENVIRONMENT",
    "WRITE_OPS",
    "SimulatedCrash",
    "Soak",
    "SoakConfig",
    "SoakReport",
    "main",
    "run_soak",
    "s3_error",
]
