"""What S3 enforces and rewrap must answer for: ownership, archived and SSE-C objects, the 2 KB
user-metadata limit, Requester Pays, and the S3 error table. Where neither emulator enforces a
rule (foreign owners, the metadata limit, some error codes), a small strict layer on the client
answers as S3 documents."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rewrap.adapters.s3 import S3Store
from rewrap.adapters.sqs import RotateQueue
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.metadata import STAMP_VERSION_METADATA
from rewrap.core.ports import USER_METADATA_LIMIT, ObjectRef, metadata_bytes
from rewrap.core.sweep import SweepPosition, SweepRun, SweepTools, run_sweep
from rewrap.errors import ObjectChangedError, ObjectUnreadableError, RewrapError
from rewrap_local.soak import s3_error
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3


def put_text(stack: LocalStack, runtime: Runtime, key: str, **extra: Any) -> bytes:
    body = "\n".join(runtime.kms.encrypt(stack.key_tag, [b"alpha", b"beta"])).encode()
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body, **extra)
    return body


def snapshot(stack: LocalStack, key: str) -> tuple[Any, ...]:
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)
    return head["ETag"], head.get("VersionId"), head["Metadata"]


def strict(client: Any, op: str, answer: Any) -> None:
    """Answer ``op`` requests with ``answer(request)`` when it returns a response (the strict layer)."""
    client.meta.events.register(f"before-send.s3.{op}", lambda request, **_: answer(request))


# --- ownership ----------------------------------------------------------------------------------
def test_an_object_owned_by_another_account_is_refused_and_left_untouched(stack: LocalStack, runtime: Runtime) -> None:
    # Given an object in an ACL bucket that another account uploaded (the emulators know one account:
    # the strict layer answers GetObjectAcl with the other owner, as S3 would)
    stack.client("s3").put_bucket_ownership_controls(
        Bucket=stack.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    put_text(stack, runtime, "theirs.txt")
    before = snapshot(stack, "theirs.txt")
    stack.kms.rotate(stack.key_tag)

    def foreign(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Owner"] = {"ID": "f" * 64}

    runtime.s3.meta.events.register("after-call.s3.GetObjectAcl", foreign)

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "theirs.txt")])

    # Then it failed permanently as foreign-owner and nothing was written
    assert result.status is Status.FAILED and result.error is not None
    assert (result.error.code, result.error.retryable) == ("foreign-owner", False)
    assert snapshot(stack, "theirs.txt") == before


def test_bucket_owner_enforced_skips_acls_and_is_looked_up_once(stack: LocalStack, runtime: Runtime) -> None:
    stack.client("s3").put_bucket_ownership_controls(
        Bucket=stack.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    for key in ("a.txt", "b.txt"):
        put_text(stack, runtime, key)
    stack.kms.rotate(stack.key_tag)
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    first = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt")])
    second = runtime.engine.rotate([ObjectRef(stack.bucket, "b.txt")])

    assert [r.status for r in first + second] == [Status.ROTATED, Status.ROTATED]
    assert calls.count("GetBucketOwnershipControls") == 1  # per bucket per container
    assert "GetObjectAcl" not in calls and "GetBucketAcl" not in calls


def test_a_retention_date_already_past_is_dropped(stack: LocalStack, runtime: Runtime) -> None:
    # Given a lock bucket and an object whose retention ran out a moment ago
    from datetime import UTC, datetime, timedelta

    s3 = stack.client("s3")
    bucket = f"{stack.bucket}-lock"
    s3.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"},
        ObjectLockEnabledForBucket=True,
    )
    runtime.engine.settings = stack.settings(buckets=frozenset({bucket}))
    body = "\n".join(runtime.kms.encrypt(stack.key_tag, [b"x"])).encode()
    until = datetime.now(UTC) + timedelta(seconds=2)
    s3.put_object(Bucket=bucket, Key="k", Body=body, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    stack.kms.rotate(stack.key_tag)
    import time

    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
    sent: list[dict[str, Any]] = []
    runtime.s3.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: sent.append(params))

    (result,) = runtime.engine.rotate([ObjectRef(bucket, "k")])

    assert result.status is Status.ROTATED, result.to_dict()
    assert "ObjectLockRetainUntilDate" not in sent[0] and "ObjectLockMode" not in sent[0]


# --- archived and SSE-C: unreadable, reported -------------------------------------------------------
def test_archived_objects_are_unreadable_and_restored_ones_rotate_keeping_their_class(
    stack: LocalStack, runtime: Runtime
) -> None:
    s3 = stack.client("s3")
    for key in ("cold.txt", "thawed.txt", "deep.txt"):
        put_text(stack, runtime, key, StorageClass="DEEP_ARCHIVE" if key == "deep.txt" else "GLACIER")
    s3.restore_object(Bucket=stack.bucket, Key="thawed.txt", RestoreRequest={"Days": 1})
    stack.kms.rotate(stack.key_tag)

    results = runtime.engine.rotate([ObjectRef(stack.bucket, k) for k in ("cold.txt", "thawed.txt", "deep.txt")])

    assert [(r.status, r.reason) for r in results] == [
        (Status.UNREADABLE, "archived"),
        (Status.ROTATED, None),
        (Status.UNREADABLE, "archived"),
    ]
    assert results[0].to_dict()["reason"] == "archived" and "errorClass" not in results[0].to_dict()
    assert s3.head_object(Bucket=stack.bucket, Key="thawed.txt")["StorageClass"] == "GLACIER"


def test_an_intelligent_tiering_archive_tier_is_unreadable(stack: LocalStack, runtime: Runtime) -> None:
    put_text(stack, runtime, "tiered.txt", StorageClass="INTELLIGENT_TIERING")

    def archive_tier(parsed: dict[str, Any], **_: Any) -> None:  # emulators never move objects between tiers
        parsed["ArchiveStatus"] = "DEEP_ARCHIVE_ACCESS"

    runtime.s3.meta.events.register("after-call.s3.HeadObject", archive_tier)
    # S3 refuses a GET of an object in an archive tier
    strict(runtime.s3, "GetObject", lambda request: s3_error(request.url, 403, "InvalidObjectState"))

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "tiered.txt")])

    assert (result.status, result.reason) == (Status.UNREADABLE, "archived")


def test_an_sse_c_object_is_unreadable_and_untouched(stack: LocalStack, runtime: Runtime) -> None:
    key = os.urandom(32)
    put_text(stack, runtime, "customer-key.txt", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    before = snapshot_sse_c(stack, key)
    stack.kms.rotate(stack.key_tag)
    if stack.backend == "moto":  # moto ignores SSE-C; S3 (and LocalStack) refuse a HEAD or GET without the key
        strict(runtime.s3, "HeadObject", lambda request: s3_error(request.url, 400, "400"))
        strict(runtime.s3, "GetObject", lambda request: s3_error(request.url, 400, "InvalidRequest"))

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "customer-key.txt")])

    assert (result.status, result.reason) == (Status.UNREADABLE, "sse-c")
    assert snapshot_sse_c(stack, key) == before


def snapshot_sse_c(stack: LocalStack, key: bytes) -> tuple[Any, ...]:
    head = stack.client("s3").head_object(
        Bucket=stack.bucket, Key="customer-key.txt", SSECustomerAlgorithm="AES256", SSECustomerKey=key
    )
    return head["ETag"], head["Metadata"]


def test_sweep_skips_archived_objects_at_listing_time_and_counts_them(stack: LocalStack, runtime: Runtime) -> None:
    put_text(stack, runtime, "warm.txt")
    put_text(stack, runtime, "cold.txt", StorageClass="GLACIER")
    put_text(stack, runtime, "deep.txt", StorageClass="DEEP_ARCHIVE")
    queue = RotateQueue(runtime.sqs, stack.queue_url)
    from rewrap.core.config import SweepTarget
    from rewrap.deadline import Deadline

    run = SweepRun("", targets=[SweepTarget(stack.bucket, "")])
    report = run_sweep(run, SweepPosition(), SweepTools(runtime.settings, runtime.store, queue), Deadline(None))

    assert (report.listed, report.archived, report.enqueued) == (3, 2, 1)
    message = runtime.sqs.receive_message(QueueUrl=stack.queue_url)["Messages"][0]
    assert json.loads(message["Body"])["keys"] == ["warm.txt"]


# --- the 2 KB user-metadata limit -----------------------------------------------------------------
def metadata_limit(request: Any) -> Any:
    """S3's rule, which neither emulator enforces: user metadata above 2 KB is refused."""
    size = sum(
        len(name[len("x-amz-meta-") :].encode()) + len(value if isinstance(value, bytes) else value.encode())
        for name, value in request.headers.items()
        if name.lower().startswith("x-amz-meta-")
    )
    return s3_error(request.url, 400, "MetadataTooLarge") if size > USER_METADATA_LIMIT else None


def test_stamps_are_left_out_when_they_would_not_fit(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text object whose own metadata leaves a few bytes free
    metadata = {"note": "x" * (USER_METADATA_LIMIT - len("note") - 8)}
    put_text(stack, runtime, "full.txt", Metadata=metadata)
    stack.kms.rotate(stack.key_tag)
    strict(runtime.s3, "PutObject", metadata_limit)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "full.txt")])

    assert result.status is Status.ROTATED, result.to_dict()
    assert stack.client("s3").head_object(Bucket=stack.bucket, Key="full.txt")["Metadata"] == metadata
    assert STAMP_VERSION_METADATA not in metadata


def test_an_envelope_that_outgrows_2_kb_is_refused_before_writing(stack: LocalStack, runtime: Runtime) -> None:
    # Given an envelope at v9 whose metadata is exactly 2 KB: the v10 token is one character longer
    for _ in range(8):
        stack.kms.rotate(stack.key_tag)
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"dek"])
    assert token.startswith("ncpkms:v9:")
    metadata = {"wrapped": token}
    metadata["pad"] = "p" * (USER_METADATA_LIMIT - metadata_bytes(metadata) - len("pad"))
    assert metadata_bytes(metadata) == USER_METADATA_LIMIT
    stack.client("s3").put_object(Bucket=stack.bucket, Key="sealed.bin", Body=b"data", Metadata=metadata)
    before = snapshot(stack, "sealed.bin")
    stack.kms.rotate(stack.key_tag)
    strict(runtime.s3, "CopyObject", metadata_limit)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "sealed.bin")])

    assert result.status is Status.FAILED and result.error is not None
    assert (result.error.code, result.error.retryable) == ("metadata-too-large", False)
    assert snapshot(stack, "sealed.bin") == before


# --- Requester Pays -------------------------------------------------------------------------------
def test_requester_pays_goes_on_every_call_and_a_403_says_what_to_set(stack: LocalStack, runtime: Runtime) -> None:
    put_text(stack, runtime, "paid.txt")
    stack.kms.rotate(stack.key_tag)
    headers: list[tuple[str, Any]] = []
    runtime.s3.meta.events.register(
        "before-send.s3",
        lambda request, **kw: headers.append((kw["event_name"], request.headers.get("x-amz-request-payer"))),
    )
    runtime.engine.store = S3Store(runtime.s3, requester_pays=True)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "paid.txt")])

    assert result.status is Status.ROTATED
    values = {value.decode() if isinstance(value, bytes) else value for _, value in headers}
    assert len(headers) >= 4 and values == {"requester"}  # HEAD, GET, ACL, tagging, PUT…
    # and without it, a Requester Pays bucket's 403 names the setting
    plain = S3Store(stack.client("s3"))
    strict(plain.client, "HeadObject", lambda request: s3_error(request.url, 403, "AccessDenied"))
    with pytest.raises(RewrapError, match="REWRAP_REQUESTER_PAYS=true") as denied:
        plain.head(ObjectRef(stack.bucket, "paid.txt"))
    assert not denied.value.retryable


# --- the S3 error table ---------------------------------------------------------------------------
ERROR_TABLE = [
    (503, "SlowDown", "s3-unavailable", True),
    (500, "InternalError", "s3-unavailable", True),
    (503, "ServiceUnavailable", "s3-unavailable", True),
    (400, "RequestTimeout", "s3-unavailable", True),
    (409, "OperationAborted", "s3-unavailable", True),
    (429, "TooManyRequests", "s3-unavailable", True),
    (403, "RequestTimeTooSkewed", "s3-unavailable", True),
    (400, "KMS.ThrottlingException", "s3-unavailable", True),
    (403, "AccessDenied", "s3-denied", False),
    (403, "AllAccessDisabled", "s3-denied", False),
    (403, "InvalidObjectState", "unreadable", False),
    (404, "NoSuchBucket", "no-such-bucket", False),
    (400, "MetadataTooLarge", "metadata-too-large", False),
    (400, "EntityTooLarge", "too-large", False),
    (400, "InvalidRequest", "s3-invalid-request", False),
    (400, "KMS.DisabledException", "kms-key-disabled", False),
    (412, "PreconditionFailed", "object-changed", True),
    (404, "NoSuchKey", "object-gone", True),
    (400, "SomethingNew", "s3-error", False),
    (502, "SomethingNew", "s3-unavailable", True),
]


@pytest.mark.parametrize(("status", "code", "expected", "retryable"), ERROR_TABLE)
def test_s3_error_table(
    stack: LocalStack, runtime: Runtime, status: int, code: str, expected: str, retryable: bool
) -> None:
    # S3 answers a write with the error (through botocore: its retries, its parsing)
    store = S3Store(stack.client("s3"))
    strict(store.client, "PutObject", lambda request: s3_error(request.url, status, code))

    with pytest.raises(RewrapError) as raised:
        store.put_new(stack.bucket, "report.json", b"{}", "application/json")

    assert (raised.value.code, raised.value.retryable) == (expected, retryable)
    assert isinstance(raised.value, ObjectUnreadableError) == (expected == "unreadable")
    assert isinstance(raised.value, ObjectChangedError) == (expected in ("object-changed", "object-gone"))


def test_a_request_botocore_refuses_to_send_is_permanent(stack: LocalStack) -> None:
    with pytest.raises(RewrapError) as raised:
        S3Store(stack.client("s3")).put_new(stack.bucket, "", b"{}", "application/json")  # empty key
    assert (raised.value.code, raised.value.retryable) == ("s3-invalid-request", False)


def test_a_delete_marker_answers_405_and_counts_as_missing(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    put_text(stack, runtime, "gone.txt")
    marker = s3.delete_object(Bucket=stack.bucket, Key="gone.txt")["VersionId"]
    strict(runtime.s3, "HeadObject", lambda request: s3_error(request.url, 405, "MethodNotAllowed"))

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "gone.txt", marker)])

    assert result.status is Status.MISSING


def test_client_error_without_strict_layer_still_classified(stack: LocalStack) -> None:
    # A real NoSuchBucket from the emulator itself, not the strict layer
    with pytest.raises(RewrapError) as raised:
        S3Store(stack.client("s3")).put_new(f"{stack.bucket}-absent", "r.json", b"{}", "application/json")
    assert (raised.value.code, raised.value.retryable) == ("no-such-bucket", False)
    assert isinstance(raised.value.__cause__, ClientError)  # translated, with S3's answer kept as its cause
