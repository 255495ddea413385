"""Arming a fault: one small function per fault kind, looked up in ``ARMING``. Each queues its fault
(in the emulator, the S3 hooks or the next invocation) and returns True when the NCP secret must be
restored after the phase."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .s3faults import READ_OPS, WRITE_OPS

if TYPE_CHECKING:
    from .harness import Soak

Arm = Callable[["Soak", str], bool]


def _kms_throttle(soak: Soak, fault: str) -> bool:
    soak.stack.kms.inject("throttle", times=soak.rng.randint(2, 5), action=None)
    return False


def _kms_throttle_retry_after(soak: Soak, fault: str) -> bool:
    soak.stack.kms.inject("throttle", times=soak.rng.randint(2, 4), retry_after=0.05)
    return False


def _kms_server_error(soak: Soak, fault: str) -> bool:
    for status in (500, 502, 503, 504):
        soak.stack.kms.inject("server-error", times=1, action=None, status=status)
    return False


def _kms_timeout(soak: Soak, fault: str) -> bool:
    soak.stack.kms.inject("timeout", times=2, seconds=2.0)
    return False


def _kms_malformed_reply(soak: Soak, fault: str) -> bool:
    """reset, non-json, short-reply, extra-item, bad-pattern: the emulator's fault of the same name."""
    soak.stack.kms.inject(fault.split(":")[1], times=soak.rng.randint(2, 4))
    return False


def _kms_lower_version(soak: Soak, fault: str) -> bool:
    soak.stack.kms.inject("lower-version", times=2, key_tag=soak.stack.key_tag)
    return False


def _kms_corrupt(soak: Soak, fault: str) -> bool:
    soak.stack.kms.inject("corrupt", times=soak.rng.randint(1, 2), action="re-encrypt")  # only on re-encrypt
    return False


def _kms_verify_decrypt(soak: Soak, fault: str) -> bool:
    """Faults on the verification's decrypt calls."""
    soak.stack.kms.inject("server-error", times=1, action="decrypt", status=503)
    soak.stack.kms.inject("short-reply", times=1, action="decrypt")
    return False


def _s3_slowdown(soak: Soak, fault: str) -> bool:
    ops = READ_OPS | WRITE_OPS | {"UploadPart", "UploadPartCopy", "CreateMultipartUpload"}
    soak.s3_faults.add("slowdown", ops, soak.rng.randint(3, 8))
    return False


def _s3_race(soak: Soak, fault: str) -> bool:
    """overwrite or delete: a racing writer before each kind of conditional write."""
    for op in WRITE_OPS:
        soak.s3_faults.add(fault.split(":")[1], frozenset({op}), 1)
    return False


def _app_rewrite(soak: Soak, fault: str) -> bool:
    """The application rewrites a body, keeping the metadata, before each kind of conditional write."""
    for op in WRITE_OPS:
        soak.s3_faults.add(fault, frozenset({op}), 1)
    return False


def _app_metadata(soak: Soak, fault: str) -> bool:
    """The application updates metadata only where S3 lets rewrap see it: before a self-copy (conditional on the
    source), a GET conditional on a HEAD's ETag, and a HEAD (a first read, or the check of one before a write)."""
    soak.s3_faults.add(fault, frozenset({"CopyObject"}), 1)
    soak.s3_faults.add(fault, frozenset({"GetObject"}), 2)
    soak.s3_faults.add(fault, frozenset({"HeadObject"}), 2, any_request=True)
    return False


def _s3_precondition(soak: Soak, fault: str) -> bool:
    soak.s3_faults.add("precondition", WRITE_OPS, 2, status=412, code="PreconditionFailed")
    return False


def _s3_part_failure(soak: Soak, fault: str) -> bool:
    # one part failing all of botocore's 4 attempts (max_attempts=3 retries), and a part copy once
    soak.s3_faults.add("part-failure", frozenset({"UploadPart"}), 4, status=503, code="SlowDown")
    soak.s3_faults.add("part-failure", frozenset({"UploadPartCopy"}), 1, status=500, code="InternalError")
    return False


def _next_invocation(kind: str) -> Arm:
    """crash, out-of-time, secrets-unreachable: taken by the next invocation (``Soak.invoke``)."""

    def queue(soak: Soak, fault: str) -> bool:
        soak.queue_invocation_fault(kind)
        return False

    return queue


def _secret_rotated(soak: Soak, fault: str) -> bool:
    soak.rotate_secret()
    return False


def _secret_malformed(soak: Soak, fault: str) -> bool:
    bad: Any = "{not json" if soak.rng.random() < 0.5 else {"accessKey": soak._good_secret["accessKey"]}
    soak.put_secret(bad)
    soak.cold_start()  # a new container reads the broken value
    soak.report.faults["secret:malformed"] += 1
    return True


ARMING: dict[str, Arm] = {
    "kms:throttle": _kms_throttle,
    "kms:throttle-retry-after": _kms_throttle_retry_after,
    "kms:server-error": _kms_server_error,
    "kms:timeout": _kms_timeout,
    "kms:reset": _kms_malformed_reply,
    "kms:non-json": _kms_malformed_reply,
    "kms:short-reply": _kms_malformed_reply,
    "kms:extra-item": _kms_malformed_reply,
    "kms:bad-pattern": _kms_malformed_reply,
    "kms:lower-version": _kms_lower_version,
    "kms:corrupt": _kms_corrupt,
    "kms:verify-decrypt": _kms_verify_decrypt,
    "s3:slowdown": _s3_slowdown,
    "s3:overwrite": _s3_race,
    "s3:delete": _s3_race,
    "s3:precondition": _s3_precondition,
    "s3:part-failure": _s3_part_failure,
    "app:rewrite": _app_rewrite,
    "app:metadata": _app_metadata,
    "invocation:crash": _next_invocation("crash"),
    "invocation:out-of-time": _next_invocation("out-of-time"),
    "secret:rotated": _secret_rotated,
    "secret:unreachable": _next_invocation("secrets-unreachable"),
    "secret:malformed": _secret_malformed,
}


def arm(soak: Soak, fault: str) -> bool:
    """Queue ``fault``; True when the secret must be restored after the phase."""
    try:
        arming = ARMING[fault]
    except KeyError:
        raise ValueError(f"unknown fault {fault!r}") from None
    return arming(soak, fault)
