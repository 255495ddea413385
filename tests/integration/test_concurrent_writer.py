"""The application next door: a writer acting between rewrap's read and its write keeps its change,
and a stamp it copies along is not believed.

A writer that copies an object onto itself with new metadata keeps the ETag, so only the source's
LastModified shows the change; the copy paths (CopyObject, UploadPartCopy) must refuse to copy a source
changed since it was read. Where the backend ignores S3's copy conditions (moto; UploadPartCopy's time
condition on LocalStack), ``CopyConditions`` enforces them as S3 documents, combination rule included."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

import rewrap_cli.main as cli
from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.metadata import STAMP_DIGEST_METADATA
from rewrap.core.ports import SINGLE_READ_BYTES, ObjectBody, ObjectHead, ObjectRef
from rewrap.core.tokens import token_version
from rewrap_local.s3_conditions import CopyConditions
from rewrap_local.soak.s3faults import s3_error
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
# Past the single-read size: the first GET stops at the head, the body is read in its wave (or not at all).
FILLER = b"#" * (SINGLE_READ_BYTES + 1)


class WriterDuringKms:
    """The runtime's real NCP client; before the first re-encrypt request goes out, another writer
    changes the object's metadata (a self-copy, the ETag kept) in a later second than its last write."""

    def __init__(self, kms: Any, stack: LocalStack, key: str) -> None:
        self.kms, self.stack, self.key = kms, stack, key
        self.acted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kms, name)

    def re_encrypt(self, *args: Any, **kwargs: Any) -> list[str]:
        if not self.acted:
            self.acted = True
            change_metadata(self.stack, self.key, {"owner-note": "set by the application"})
        return list(self.kms.re_encrypt(*args, **kwargs))


def change_metadata(stack: LocalStack, key: str, extra: dict[str, str]) -> None:
    s3 = stack.client("s3")
    head = s3.head_object(Bucket=stack.bucket, Key=key)
    while datetime.now(UTC).replace(microsecond=0) <= head["LastModified"]:  # S3 keeps whole seconds
        time.sleep(0.05)
    s3.copy_object(
        Bucket=stack.bucket,
        Key=key,
        CopySource={"Bucket": stack.bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={**head["Metadata"], **extra},
        ContentType=head["ContentType"],
    )


def s3_as_documented(stack: LocalStack, runtime: Runtime) -> None:
    """S3's copy conditions on the runtime's client where the backend leaves them out."""
    conditions = CopyConditions(stack.client("s3"), s3_error, source_time_only=stack.backend != "moto")
    conditions.attach(runtime.s3)


def put_envelope(stack: LocalStack, runtime: Runtime, key: str, size: int) -> str:
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"data key"])
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=b"\x00" * size, Metadata={"dek": token})
    return token


@pytest.mark.parametrize("size", [1024, 6 * MiB], ids=["CopyObject", "UploadPartCopy"])
def test_a_metadata_change_during_the_kms_request_survives_the_copy_path(
    stack: LocalStack, runtime: Runtime, size: int
) -> None:
    # Given an envelope (its token in metadata) whose key was rotated; envelopes above 5 MiB are
    # copied part by part here
    put_envelope(stack, runtime, "env.bin", size)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.store = S3Store(runtime.s3, multipart_copy_threshold=5 * MiB)
    s3_as_documented(stack, runtime)
    writer = WriterDuringKms(runtime.kms, stack, "env.bin")
    runtime.engine.kms = writer

    # When the application changes the metadata while the object's KMS request is in flight
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "env.bin")])

    # Then rewrap's copy is refused as a change, retryable, and the writer's metadata stays
    assert writer.acted
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key="env.bin")
    assert head["Metadata"]["owner-note"] == "set by the application"
    assert token_version(head["Metadata"]["dek"]) == 1

    # And the retry rotates the token keeping the writer's change
    runtime.engine.kms = runtime.kms
    (retried,) = runtime.engine.rotate([ObjectRef(stack.bucket, "env.bin")])
    assert retried.status is Status.ROTATED
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key="env.bin")
    assert head["Metadata"]["owner-note"] == "set by the application"
    assert token_version(head["Metadata"]["dek"]) == 2


# --- copied stamps --------------------------------------------------------------------------------
def test_a_stamp_copied_onto_an_older_body_of_the_same_length_is_not_trusted(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a text object rotated by rewrap (so stamped) after its key went to v2, too large to be
    # read with its head
    stack = handler_env
    s3 = stack.client("s3")
    old_body = f"K={stack.kms.encrypt(stack.key_tag, b'secret')}\n".encode() + FILLER
    s3.put_object(Bucket=stack.bucket, Key="app/config.env", Body=old_body)
    stack.kms.rotate(stack.key_tag)
    target = f"s3://{stack.bucket}/app/"
    assert cli.main(["rotate", target]) == 0
    capsys.readouterr()
    rotated = s3.get_object(Bucket=stack.bucket, Key="app/config.env")
    assert len(rotated["Body"].read()) == len(old_body)

    # When the application writes a v1 body of the same length back, copying the metadata along
    s3.put_object(Bucket=stack.bucket, Key="app/config.env", Body=old_body, Metadata=rotated["Metadata"])

    # Then rewrap reads the body, rotates it, and counts what the object held
    code = cli.main(["rotate", target])
    out = capsys.readouterr().out
    assert code == 0
    assert "objects per key version: before v1: 1 → after v2: 1" in out
    body = s3.get_object(Bucket=stack.bucket, Key="app/config.env")["Body"].read()
    assert token_version(body[: body.index(b"\n")].decode().removeprefix("K=")) == 2


def test_rewraps_own_write_is_answered_from_the_head_while_the_etag_matches_the_stamp(
    stack: LocalStack, runtime: Runtime
) -> None:
    # Given a text object rewrap has rotated, too large to be read with its head
    s3 = stack.client("s3")
    token = runtime.kms.encrypt(stack.key_tag, [b"s"])[0]
    s3.put_object(Bucket=stack.bucket, Key="a.env", Body=f"K={token}\n".encode() + FILLER)
    stack.kms.rotate(stack.key_tag)
    ref = ObjectRef(stack.bucket, "a.env")
    assert runtime.engine.rotate([ref])[0].status is Status.ROTATED
    head = s3.head_object(Bucket=stack.bucket, Key="a.env")
    assert head["Metadata"][STAMP_DIGEST_METADATA] == head["ETag"].strip('"')
    gets: list[str] = []
    runtime.s3.meta.events.register("before-call.s3.GetObject", lambda **_: gets.append("GET"))

    # When our own write triggers rewrap again, the head answers: current, the body not read (the one
    # GET stopped at the head)
    (again,) = runtime.engine.rotate([ref])
    assert again.status is Status.CURRENT and again.old_versions == (2,)
    assert gets == ["GET"]


# --- the PutObject path ---------------------------------------------------------------------------
class WriterBeforeGet(S3Store):
    """The real S3 adapter; another writer changes the metadata after rewrap read the head, before the
    body's GET."""

    def __init__(self, client: Any, stack: LocalStack) -> None:
        super().__init__(client)
        self.stack = stack

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        change_metadata(self.stack, ref.key, {"owner-note": "set by the application"})
        return super().get_body(ref, head)


def test_a_metadata_change_before_the_body_is_read_survives_the_put_path(stack: LocalStack, runtime: Runtime) -> None:
    # Given a text object whose key was rotated, too large to be read with its head
    s3 = stack.client("s3")
    token = runtime.kms.encrypt(stack.key_tag, [b"s"])[0]
    s3.put_object(Bucket=stack.bucket, Key="a.env", Body=f"K={token}\n".encode() + FILLER, Metadata={"team": "a"})
    stack.kms.rotate(stack.key_tag)
    runtime.engine.store = WriterBeforeGet(runtime.s3, stack)

    # When the application changes the metadata between rewrap's first read (the head) and the body's
    # GET (the ETag kept)
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.env")])

    # Then nothing is written (retryable), and the writer's change stays
    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    head = s3.head_object(Bucket=stack.bucket, Key="a.env")
    assert head["Metadata"] == {"team": "a", "owner-note": "set by the application"}
