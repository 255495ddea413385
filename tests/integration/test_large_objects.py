"""Large objects: streamed text bodies (multipart, unchanged ranges copied server-side), envelopes
above the single-copy limit (multipart copy), and verified rotation."""

from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Any

import pytest

from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectRef
from rewrap.core.tokens import scan
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


class CountingStore(S3Store):
    """The real S3 adapter, counting what a rewrite moves."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.writers: list[Any] = []

    def start_rewrite(self, *args: Any, **kwargs: Any) -> Any:
        writer = super().start_rewrite(*args, **kwargs)
        self.writers.append(writer)
        return writer


def streaming(runtime: Runtime, stack: LocalStack, **overrides: Any) -> CountingStore:
    settings = stack.settings(stream_threshold_bytes=8 * MiB, segment_bytes=6 * MiB, **overrides)
    store = CountingStore(runtime.s3, multipart_copy_threshold=settings.multipart_copy_threshold_bytes)
    runtime.engine.settings, runtime.engine.store = settings, store
    return store


def ndjson(runtime: Runtime, stack: LocalStack, rows: int, filler_bytes: int = 0) -> tuple[bytes, list[bytes]]:
    """Rows with tokens, then a long stretch without any (so some segments need no change)."""
    secrets = [f"row-{i}".encode() for i in range(rows)]
    tokens = runtime.kms.encrypt(stack.key_tag, secrets)
    body = "".join(json.dumps({"id": i, "secret": t}) + "\n" for i, t in enumerate(tokens)).encode()
    return body + b"#" * filler_bytes, secrets


def test_large_text_object_is_streamed_and_unchanged_ranges_are_copied(stack: LocalStack, runtime: Runtime) -> None:
    # Given 20k tokens (~1.6 MiB) followed by 18 MiB without tokens
    body, secrets = ndjson(runtime, stack, 20_000, filler_bytes=18 * MiB)
    s3 = stack.client("s3")
    s3.put_object(
        Bucket=stack.bucket,
        Key="big.ndjson",
        Body=body,
        ContentType="application/x-ndjson",
        Metadata={"owner": "data"},
        Tagging="tier=gold",
    )
    stack.kms.rotate(stack.key_tag)
    store = streaming(runtime, stack)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "big.ndjson")])

    assert result.status is Status.ROTATED and result.rotated_tokens == 20_000
    rotated = s3.get_object(Bucket=stack.bucket, Key="big.ndjson")["Body"].read()
    found = scan(rotated)[0]
    assert {t.version for t in found} == {2} and len(rotated) == len(body)  # same-length tokens here
    assert runtime.kms.decrypt(stack.key_tag, [t.text for t in found]) == secrets
    assert rotated.endswith(b"#" * 18 * MiB)
    (writer,) = store.writers
    assert writer.bytes_uploaded < 8 * MiB  # only the segment holding tokens went up; the rest was copied
    head = s3.head_object(Bucket=stack.bucket, Key="big.ndjson")
    assert head["ContentType"] == "application/x-ndjson" and head["Metadata"] == {"owner": "data"}
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="big.ndjson")["TagSet"] == [{"Key": "tier", "Value": "gold"}]


def test_large_object_already_current_is_read_once_and_never_written(stack: LocalStack, runtime: Runtime) -> None:
    stack.kms.rotate(stack.key_tag)
    body, _ = ndjson(runtime, stack, 2_000, filler_bytes=9 * MiB)
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="current.ndjson", Body=body)
    etag = s3.head_object(Bucket=stack.bucket, Key="current.ndjson")["ETag"]
    store = streaming(runtime, stack)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "current.ndjson")])

    assert result.status is Status.CURRENT and result.tokens == 2_000
    assert store.writers == []
    assert s3.head_object(Bucket=stack.bucket, Key="current.ndjson")["ETag"] == etag


def test_malformed_token_deep_in_a_large_object_aborts_the_upload(stack: LocalStack, runtime: Runtime) -> None:
    body, _ = ndjson(runtime, stack, 2_000, filler_bytes=9 * MiB)
    body += b"\nncpkms:v01:AAAA"
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="bad.ndjson", Body=body)
    stack.kms.rotate(stack.key_tag)
    streaming(runtime, stack)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "bad.ndjson")])

    assert result.status is Status.FAILED and result.error is not None and result.error.code == "malformed-token"
    assert f"byte {len(body) - len('ncpkms:v01:AAAA')}" in result.error.reason
    assert s3.get_object(Bucket=stack.bucket, Key="bad.ndjson")["Body"].read() == body
    assert not s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads")


@pytest.mark.parametrize("current", [False, True], ids=["no-tokens", "current"])
def test_large_gzip_body_left_unchanged_leaves_no_upload_behind(
    stack: LocalStack, runtime: Runtime, current: bool
) -> None:
    # Given a gzip body larger than a part that needs no change: its re-encoded parts start an
    # upload before the end shows nothing changed
    if current:
        stack.kms.rotate(stack.key_tag)
    lead = runtime.kms.encrypt(stack.key_tag, [b"secret"])[0].encode() + b"\n" if current else b""
    body = gzip.compress(lead + base64.b64encode(os.urandom(12 * MiB)), compresslevel=1)
    assert len(body) > 8 * MiB  # streamed (above 8 MiB), re-encoded in parts of 6 MiB
    s3 = stack.client("s3")
    key = "quiet.txt.gz"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    etag = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    store = streaming(runtime, stack)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, key)])

    assert result.status is (Status.CURRENT if current else Status.NO_TOKENS), result.to_dict()
    assert len(store.writers) == 1  # the upload was started, so it must have been aborted
    assert not s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads")
    assert s3.head_object(Bucket=stack.bucket, Key=key)["ETag"] == etag


def test_envelope_above_the_copy_limit_is_copied_in_parts(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    data_key = runtime.kms.create_custom_key(stack.key_tag)
    body = bytes(range(256)) * (13 * MiB // 256)
    s3.put_object(
        Bucket=stack.bucket,
        Key="huge.bin",
        Body=body,
        ContentType="application/x-sealed",
        CacheControl="no-cache",
        Metadata={"wrapped": data_key.ciphertext, "alg": "AES-GCM"},
        Tagging="k=v",
    )
    stack.kms.rotate(stack.key_tag)
    store = streaming(runtime, stack, multipart_copy_threshold_bytes=6 * MiB)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "huge.bin")])

    assert result.status is Status.ROTATED
    (writer,) = store.writers
    assert writer.bytes_uploaded == 0 and len(writer.parts) == 3  # 6 + 6 + 1 MiB, all server-side copies
    head = s3.head_object(Bucket=stack.bucket, Key="huge.bin")
    assert head["Metadata"]["wrapped"].startswith("ncpkms:v2:") and head["Metadata"]["alg"] == "AES-GCM"
    assert (head["ContentType"], head["CacheControl"]) == ("application/x-sealed", "no-cache")
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="huge.bin")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert s3.get_object(Bucket=stack.bucket, Key="huge.bin")["Body"].read() == body


@pytest.mark.parametrize("corrupt", [False, True])
def test_verified_rotation_refuses_a_well_formed_but_wrong_reply(
    stack: LocalStack, runtime: Runtime, corrupt: bool
) -> None:
    tokens = runtime.kms.encrypt(stack.key_tag, [b"one", b"two"])
    original = " ".join(tokens).encode()
    stack.client("s3").put_object(Bucket=stack.bucket, Key="v.txt", Body=original)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.settings = stack.settings(verify=True)
    if corrupt:
        stack.kms.inject("corrupt", key_tag=stack.key_tag)
    stack.kms.stats.reset()

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "v.txt")])

    after = stack.client("s3").get_object(Bucket=stack.bucket, Key="v.txt")["Body"].read()
    assert stack.kms.stats.requests["decrypt"] == 2  # old and new tokens, one batch each
    if corrupt:
        assert result.status is Status.FAILED and not result.retryable
        assert result.error is not None and result.error.code == "verification-failed"
        assert after == original
    else:
        assert result.status is Status.ROTATED
        assert runtime.kms.decrypt(stack.key_tag, [t.text for t in scan(after)[0]]) == [b"one", b"two"]
