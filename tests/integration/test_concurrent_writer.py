"""The application next door: what a writer sharing the bucket can rely on.

- Its change is never reverted: on the copy paths exactly (CopyObject conditional on Last-Modified, and
  a HEAD for an object read in the second it was written); on the PutObject and multipart paths once the
  read is older than ``RECHECK_AFTER_SECONDS`` (the head is read again).
- A stamp it carries along onto a new body is never trusted: the body is read.
- Tags are read where a read's missing tag count cannot mean "none".

LocalStack enforces the copy conditions (but the time condition of UploadPartCopy); moto ignores them, so
a small strict layer answers them as S3 documents them. The writer acts while the object's KMS request is in flight,
as the adversarial probe of issue 23 did.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

import rewrap_cli.main as cli
from rewrap.adapters.s3 import S3Store
from rewrap.adapters.s3_conditions import RECHECK_AFTER_SECONDS
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.metadata import STAMP_CHECKSUM_METADATA, STAMP_VERSION_METADATA
from rewrap.core.ports import ObjectBody, ObjectHead, ObjectRef
from rewrap.core.tokens import scan
from rewrap_local.s3_conditions import CopyConditions
from rewrap_local.soak.s3faults import s3_error
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3

WRITER = {"owner": "the application", "revision": "2"}


def enforce_copy_conditions(stack: LocalStack, client: Any) -> None:
    """S3's copy conditions on the runtime's client where the backend leaves them out (moto ignores them;
    LocalStack, UploadPartCopy's time condition): answered as S3 documents, combination rule included."""
    CopyConditions(stack.client("s3"), s3_error, source_time_only=stack.backend != "moto").attach(client)


def during_kms(runtime: Runtime, action: Any) -> list[str]:
    """Run ``action`` once, as the first re-encrypt request leaves for KMS; returns the S3 calls rewrap makes."""
    done: list[bool] = []

    def hook(request: httpx.Request) -> None:
        if "encrypt" in request.url.path and not done:
            done.append(True)
            action()

    runtime.kms.http.event_hooks = {"request": [hook], "response": []}
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def self_copy_with_new_metadata(stack: LocalStack, key: str) -> Any:
    """The writer: a copy of the object onto itself with new metadata and Content-Type (the ETag stays)."""
    s3 = stack.client("s3")

    def write() -> None:
        metadata = {**s3.head_object(Bucket=stack.bucket, Key=key)["Metadata"], **WRITER}
        s3.copy_object(
            Bucket=stack.bucket,
            Key=key,
            CopySource={"Bucket": stack.bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata=metadata,
            ContentType="application/x-writer",
        )

    return write


def put_envelope(stack: LocalStack, key: str, wrapped: str) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=b"\x00" * 1024, Metadata={"wrapped": wrapped})


def put_text(stack: LocalStack, runtime: Runtime, key: str, secrets: list[bytes], **extra: Any) -> bytes:
    body = "\n".join(runtime.kms.encrypt(stack.key_tag, secrets)).encode()
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body, **extra)
    return body


def head(stack: LocalStack, key: str) -> Any:
    return stack.client("s3").head_object(Bucket=stack.bucket, Key=key)


def kept_by_writer(stack: LocalStack, key: str) -> bool:
    now = head(stack, key)
    return now["ContentType"] == "application/x-writer" and WRITER.items() <= now["Metadata"].items()


def next_second() -> None:
    """Sleep to just past the start of a second (the servers run on this machine's clock)."""
    time.sleep(1 - time.time() % 1 + 0.01)


# --- a writer's change is never reverted -------------------------------------------------------
def test_a_metadata_change_during_the_kms_round_stops_the_copy(stack: LocalStack, runtime: Runtime) -> None:
    # Given an envelope written a while ago, and a writer that copies it onto itself with new metadata
    # while rewrap waits for KMS: the ETag stays, so If-Match and CopySourceIfMatch would both pass
    put_envelope(stack, "sealed.bin", runtime.kms.create_custom_key(stack.key_tag).ciphertext)
    stack.kms.rotate(stack.key_tag)
    next_second()  # the envelope's Last-Modified second is over: the copy's own condition must see the change
    enforce_copy_conditions(stack, runtime.s3)
    calls = during_kms(runtime, self_copy_with_new_metadata(stack, "sealed.bin"))

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "sealed.bin")])

    # Then the copy was refused by S3 (no second look was needed) and the writer's change is there
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    assert "HeadObject" not in calls and "CopyObject" in calls
    assert kept_by_writer(stack, "sealed.bin")


def test_a_metadata_change_in_the_second_the_object_was_written_stops_the_copy(
    stack: LocalStack, runtime: Runtime
) -> None:
    # Given an envelope read in the second it was written, and the writer's change in that same second:
    # Last-Modified keeps whole seconds, so the copy's condition cannot see it
    wrapped = runtime.kms.create_custom_key(stack.key_tag).ciphertext
    stack.kms.rotate(stack.key_tag)
    next_second()
    put_envelope(stack, "fresh.bin", wrapped)
    enforce_copy_conditions(stack, runtime.s3)
    calls = during_kms(runtime, self_copy_with_new_metadata(stack, "fresh.bin"))

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "fresh.bin")])

    # Then rewrap looked again once the second was over, saw the change and wrote nothing
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    assert kept_by_writer(stack, "fresh.bin")
    assert ("HeadObject" in calls) != ("CopyObject" in calls)  # stopped by the second look, or by the condition


def test_a_metadata_change_during_a_slow_kms_round_stops_the_put(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text object and a KMS round longer than the PutObject path's window: PutObject has no
    # precondition but the ETag, which the writer's self-copy keeps
    put_text(stack, runtime, "notes.txt", [b"alpha", b"beta"])
    stack.kms.rotate(stack.key_tag)
    stack.kms.set_latency(RECHECK_AFTER_SECONDS + 0.2)
    calls = during_kms(runtime, self_copy_with_new_metadata(stack, "notes.txt"))

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "notes.txt")])

    # Then the head was read again before the PUT, and the writer's change (and its v1 body) stand
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    assert "HeadObject" in calls and "PutObject" not in calls
    assert kept_by_writer(stack, "notes.txt")


def test_a_metadata_change_during_a_multipart_rewrite_stops_its_completion(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text body streamed in parts (segments of 6 MiB), each part's tokens re-wrapped as it comes,
    # and the writer's self-copy during the first segment's KMS request
    token = runtime.kms.encrypt(stack.key_tag, [b"secret"])[0].encode()
    filler = b"x" * (6 * 1024 * 1024)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="big.log", Body=token + filler + b"\n" + token)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.settings = stack.settings(stream_threshold_bytes=1024 * 1024, segment_bytes=6 * 1024 * 1024)
    enforce_copy_conditions(stack, runtime.s3)
    calls = during_kms(runtime, self_copy_with_new_metadata(stack, "big.log"))

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "big.log")])

    # Then the upload was aborted, not completed over the writer's change
    assert result.status is Status.FAILED and result.retryable, result.to_dict()
    assert "CompleteMultipartUpload" not in calls and "AbortMultipartUpload" in calls
    assert kept_by_writer(stack, "big.log")
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key="big.log")["Body"].read()
    assert {t.version for t in scan(body)[0]} == {1}


# --- a stamp is trusted only while it describes the body ----------------------------------------
def test_a_stamp_carried_onto_a_new_body_is_not_trusted(
    handler_env: LocalStack, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a text object rewrap rotated (and stamped), then an application's read-modify-write that kept
    # the user metadata, stamps included, and wrote a v1 token of the same length
    stack = handler_env
    s3 = stack.client("s3")
    (old,) = runtime.kms.encrypt(stack.key_tag, [b"later"])
    put_text(stack, runtime, "config.env", [b"first"])
    stack.kms.rotate(stack.key_tag)
    assert runtime.engine.rotate([ObjectRef(stack.bucket, "config.env")])[0].status is Status.ROTATED
    rotated = s3.get_object(Bucket=stack.bucket, Key="config.env")
    metadata = rotated["Metadata"]
    assert {STAMP_VERSION_METADATA, STAMP_CHECKSUM_METADATA} <= metadata.keys()
    assert len(old) == len(rotated["Body"].read())
    s3.put_object(Bucket=stack.bucket, Key="config.env", Body=old.encode(), Metadata=metadata)

    # When the object is rotated again, by the engine and by ``rewrap rotate``
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "config.env")], dry_run=True)
    code = cli.main(["rotate", f"s3://{stack.bucket}/"])
    out = capsys.readouterr().out

    # Then the body was read and its v1 token rotated; the counts are what the object held
    assert (result.status, result.old_versions) == (Status.WOULD_ROTATE, (1,))
    assert code == 0
    assert "objects per key version: before v1: 1 → after v2: 1" in out
    body = s3.get_object(Bucket=stack.bucket, Key="config.env")["Body"].read()
    assert [t.version for t in scan(body)[0]] == [2]


def test_rewraps_own_stamp_saves_reading_a_large_body_again(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text object rotated by rewrap, larger than the bodies the engine may take with their heads
    # (a quarter of its memory budget)
    put_text(stack, runtime, "large.ndjson", [f"{i}".encode() for i in range(16_000)])  # over 1 MiB
    stack.kms.rotate(stack.key_tag)
    assert runtime.engine.rotate([ObjectRef(stack.bucket, "large.ndjson")])[0].status is Status.ROTATED
    runtime.engine.memory_budget_bytes = 4 * 1024 * 1024
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    # When its own write comes back as an event
    (again,) = runtime.engine.rotate([ObjectRef(stack.bucket, "large.ndjson")])

    # Then the checksum S3 reports proves the stamp: current from the first GET's headers, the body unread
    assert (again.status, again.old_versions) == (Status.CURRENT, (2,))
    assert calls == ["GetObject"]


# --- tags are read where a missing count cannot mean "none" -------------------------------------
def test_a_missing_tag_count_means_no_tags_once_tags_were_read_in_the_bucket(
    stack: LocalStack, runtime: Runtime
) -> None:
    s3 = stack.client("s3")
    put_text(stack, runtime, "first.txt", [b"a"])
    put_text(stack, runtime, "tagged.txt", [b"b"], Tagging="team=data&keep=yes")
    put_text(stack, runtime, "plain.txt", [b"c"])
    stack.kms.rotate(stack.key_tag)
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    runtime.engine.rotate([ObjectRef(stack.bucket, "first.txt")])
    assert calls.count("GetObjectTagging") == 1  # the first write in the bucket reads them
    calls.clear()

    results = runtime.engine.rotate([ObjectRef(stack.bucket, k) for k in ("tagged.txt", "plain.txt")])

    # only the object whose GET counted tags had them read; both kept what they had
    assert [r.status for r in results] == [Status.ROTATED] * 2
    assert calls.count("GetObjectTagging") == 1
    tags = s3.get_object_tagging(Bucket=stack.bucket, Key="tagged.txt")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("keep", "yes"), ("team", "data")]
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="plain.txt")["TagSet"] == []


def test_a_store_seen_leaving_tag_counts_out_has_every_objects_tags_read(stack: LocalStack, runtime: Runtime) -> None:
    # Given a store that never reports a tag count (some S3 stand-ins), played by dropping it from GETs
    s3 = stack.client("s3")
    put_text(stack, runtime, "tagged.txt", [b"a"], Tagging="team=data")
    for key in ("one.txt", "two.txt"):
        put_text(stack, runtime, key, [b"b"], Tagging="team=ops")
    stack.kms.rotate(stack.key_tag)
    runtime.s3.meta.events.register("after-call.s3.GetObject", lambda parsed, **_: parsed.pop("TagCount", None))
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    runtime.engine.rotate([ObjectRef(stack.bucket, "tagged.txt")])  # the first tag read finds tags no GET counted

    results = runtime.engine.rotate([ObjectRef(stack.bucket, k) for k in ("one.txt", "two.txt")])

    # every object's tags were read, and kept
    assert [r.status for r in results] == [Status.ROTATED] * 2
    assert calls.count("GetObjectTagging") == 3
    for key, team in (("tagged.txt", "data"), ("one.txt", "ops"), ("two.txt", "ops")):
        assert s3.get_object_tagging(Bucket=stack.bucket, Key=key)["TagSet"] == [{"Key": "team", "Value": team}]


class WriterBeforeGet(S3Store):
    """The real S3 adapter; another writer changes the metadata after rewrap's first read (which left the
    body unread), before the body's GET."""

    def __init__(self, client: Any, stack: LocalStack) -> None:
        super().__init__(client)
        self.stack = stack

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        next_second()  # a change S3 dates later than the object's write
        self_copy_with_new_metadata(self.stack, ref.key)()
        return super().get_body(ref, head)


def test_a_metadata_change_before_the_body_is_read_stops_the_put(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text object larger than the bodies the engine may take with their heads (a quarter of its
    # memory budget), so its body is read with a second GET
    body = put_text(stack, runtime, "a.env", [b"s"]) + b"\n" + b"x" * (1536 * 1024)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="a.env", Body=body)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.memory_budget_bytes = 4 * 1024 * 1024
    runtime.engine.store = WriterBeforeGet(runtime.s3, stack)

    # When the application changes the metadata between that first read and the body's GET
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.env")])

    # Then the body's GET shows the change: nothing is written, and the writer's change stays
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    assert kept_by_writer(stack, "a.env")
