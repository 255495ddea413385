"""The engine against moto (server mode) and the NCP KMS emulator over loopback."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectBody, ObjectHead, ObjectRef
from rewrap.core.tokens import scan, token_version
from rewrap.errors import BucketNotAllowedError
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3


def put_text(
    stack: LocalStack, runtime: Runtime, key: str, secrets: list[bytes], fmt: str = "{}", **extra: Any
) -> bytes:
    tokens = runtime.kms.encrypt(stack.key_tag, secrets)
    body = "\n".join(fmt.format(t) for t in tokens).encode()
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body, **extra)
    return body


def body_of(stack: LocalStack, key: str) -> bytes:
    return stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def versions_in(data: bytes) -> set[int]:
    return {t.version for t in scan(data)[0]}


def test_text_object_rotates_every_token_and_keeps_every_other_byte(stack: LocalStack, runtime: Runtime) -> None:
    # Given a body with tokens between non-UTF-8 bytes, JSON escapes and plain text
    s3 = stack.client("s3")
    tokens = runtime.kms.encrypt(stack.key_tag, [b"alpha", b"beta", b"gamma"])
    while "/" not in tokens[2]:  # the JSON-escaped token must contain a slash to escape
        tokens[2:] = runtime.kms.encrypt(stack.key_tag, [b"gamma"])
    escaped = tokens[2].replace("/", "\\/")
    original = (
        b"\xff\xfe" + tokens[0].encode() + b"\x00 mid " + tokens[1].encode() + b' {"k":"' + escaped.encode() + b'"}'
    )
    s3.put_object(
        Bucket=stack.bucket,
        Key="mixed.bin",
        Body=original,
        ContentType="text/x-custom",
        Metadata={"team": "a"},
        Tagging="env=prod&owner=sec",
    )
    stack.kms.rotate(stack.key_tag)

    # When
    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "mixed.bin")])

    # Then the tokens moved to v2, decrypt to the same plaintext, and nothing else changed
    assert result.status is Status.ROTATED and result.rotated_tokens == 3 and result.new_version == 2
    rotated = body_of(stack, "mixed.bin")
    found = scan(rotated)[0]
    assert [t.version for t in found] == [2, 2, 2]
    assert b"/" not in rotated[found[2].start : found[2].end].replace(b"\\/", b"")  # escaped like the original
    assert runtime.kms.decrypt(stack.key_tag, [t.text for t in found]) == [b"alpha", b"beta", b"gamma"]
    skeleton = rotated
    for token in found:
        skeleton = skeleton.replace(rotated[token.start : token.end], b"<T>")
    expected = original
    for token in scan(original)[0]:
        expected = expected.replace(original[token.start : token.end], b"<T>")
    assert skeleton == expected
    head = s3.head_object(Bucket=stack.bucket, Key="mixed.bin")
    assert head["ContentType"] == "text/x-custom"
    assert head["Metadata"]["team"] == "a"
    tags = s3.get_object_tagging(Bucket=stack.bucket, Key="mixed.bin")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("owner", "sec")]


def test_envelope_rotation_replaces_metadata_only_and_preserves_every_header(
    stack: LocalStack, runtime: Runtime
) -> None:
    s3 = stack.client("s3")
    data_key = runtime.kms.create_custom_key(stack.key_tag)
    body = bytes(range(256)) * 64
    s3.put_object(
        Bucket=stack.bucket,
        Key="env/blob.bin",
        Body=body,
        ContentType="application/octet-stream",
        ContentEncoding="identity",
        ContentLanguage="ko",
        ContentDisposition='attachment; filename="blob.bin"',
        CacheControl="no-store",
        StorageClass="STANDARD_IA",
        ServerSideEncryption="AES256",
        Metadata={"wrapped-key": data_key.ciphertext, "iv": "abc", "note": "ncpkms tokens inside"},
        Tagging="a=1",
    )
    stack.kms.rotate(stack.key_tag)
    stack.kms.stats.reset()

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "env/blob.bin")])

    assert result.status is Status.ROTATED
    head = s3.head_object(Bucket=stack.bucket, Key="env/blob.bin")
    assert token_version(head["Metadata"]["wrapped-key"]) == 2
    assert runtime.kms.decrypt(stack.key_tag, [head["Metadata"]["wrapped-key"]]) == runtime.kms.decrypt(
        stack.key_tag, [data_key.ciphertext]
    )
    assert {k: v for k, v in head["Metadata"].items() if k != "wrapped-key"} == {
        "iv": "abc",
        "note": "ncpkms tokens inside",
    }
    expected = {
        "ContentType": "application/octet-stream",
        "ContentEncoding": "identity",
        "ContentLanguage": "ko",
        "ContentDisposition": 'attachment; filename="blob.bin"',
        "CacheControl": "no-store",
        "StorageClass": "STANDARD_IA",
        "ServerSideEncryption": "AES256",
    }
    assert {name: head.get(name) for name in expected} == expected
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="env/blob.bin")["TagSet"] == [{"Key": "a", "Value": "1"}]
    assert body_of(stack, "env/blob.bin") == body
    assert stack.kms.stats.requests["re-encrypt"] == 1


def test_second_run_converges_and_writes_nothing(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    put_text(stack, runtime, "a.txt", [b"1", b"2"])
    stack.kms.rotate(stack.key_tag)
    refs = [ObjectRef(stack.bucket, "a.txt")]
    assert runtime.engine.rotate(refs)[0].status is Status.ROTATED
    versions_after_first = s3.list_object_versions(Bucket=stack.bucket)["Versions"]

    (again,) = runtime.engine.rotate(refs)

    assert again.status is Status.CURRENT
    assert s3.list_object_versions(Bucket=stack.bucket)["Versions"] == versions_after_first
    assert len(versions_after_first) == 2  # the rotation added a version and kept the old one


def test_dry_run_reports_and_writes_nothing(stack: LocalStack, runtime: Runtime) -> None:
    original = put_text(stack, runtime, "a.txt", [b"x"])
    stack.kms.rotate(stack.key_tag)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt")], dry_run=True)

    assert result.status is Status.WOULD_ROTATE and result.new_version == 2
    assert body_of(stack, "a.txt") == original


@pytest.mark.parametrize("fault", ["short-reply", "extra-item", "lower-version", "bad-pattern"])
def test_invalid_kms_reply_leaves_object_untouched(stack: LocalStack, runtime: Runtime, fault: str) -> None:
    stack.kms.rotate(stack.key_tag)  # tokens at v2, so a "lower" reply can be v1
    original = put_text(stack, runtime, "a.txt", [b"x", b"y", b"z"])
    stack.kms.rotate(stack.key_tag)
    stack.kms.inject(fault, times=10, key_tag=stack.key_tag)  # more than the client's attempts

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt")])

    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "kms-invalid-reply"
    assert body_of(stack, "a.txt") == original


class RacingStore(S3Store):
    """The real S3 adapter, with another writer (or a delete) slipped in between our read and write."""

    def __init__(self, client: Any, race: str) -> None:
        super().__init__(client)
        self.race = race

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        read = super().read_small(ref, limit)
        self._race(ref)
        return read

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        body = super().get_body(ref, head)
        self._race(ref)
        return body

    def _race(self, ref: ObjectRef) -> None:
        if self.race == "overwrite":
            self.client.put_object(Bucket=ref.bucket, Key=ref.key, Body=b"someone else's newer content")
        else:
            self.client.delete_object(Bucket=ref.bucket, Key=ref.key)


def test_conditional_write_loses_to_a_concurrent_writer(stack: LocalStack, runtime: Runtime) -> None:
    put_text(stack, runtime, "a.txt", [b"x"])
    stack.kms.rotate(stack.key_tag)
    runtime.engine.store = RacingStore(runtime.s3, "overwrite")

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt")])

    assert result.status is Status.FAILED and result.retryable
    assert result.error is not None and result.error.code == "object-changed"
    assert body_of(stack, "a.txt") == b"someone else's newer content"


def test_object_deleted_between_read_and_write_is_not_resurrected(stack: LocalStack, runtime: Runtime) -> None:
    put_text(stack, runtime, "a.txt", [b"x"])
    stack.kms.rotate(stack.key_tag)
    runtime.engine.store = RacingStore(runtime.s3, "delete")

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt")])

    assert result.status in (Status.MISSING, Status.FAILED)
    assert "Contents" not in stack.client("s3").list_objects_v2(Bucket=stack.bucket)


def test_all_objects_share_kms_requests(stack: LocalStack, runtime: Runtime) -> None:
    refs = []
    for index in range(30):
        put_text(stack, runtime, f"obj-{index}.txt", [f"{index}-{j}".encode() for j in range(10)])
        refs.append(ObjectRef(stack.bucket, f"obj-{index}.txt"))
    stack.kms.rotate(stack.key_tag)
    stack.kms.stats.reset()

    results = runtime.engine.rotate(refs)

    assert {r.status for r in results} == {Status.ROTATED}
    # 300 tokens of ~70 characters fit in one 32 KB list
    assert stack.kms.stats.requests["re-encrypt"] == 1
    assert stack.kms.stats.items["re-encrypt"] == 300
    # and once the newest version is known, current objects cost no KMS request
    stack.kms.stats.reset()
    runtime.engine.rotate(refs)
    assert stack.kms.stats.requests["re-encrypt"] == 0


def test_refusals_are_permanent_and_touch_nothing(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    good = put_text(stack, runtime, "good.txt", [b"x"])
    s3.put_object(Bucket=stack.bucket, Key="broken.txt", Body=b"ncpkms:v1:not-base64!! and ncpkms:v0:AAAA")
    s3.put_object(Bucket=stack.bucket, Key="big.txt", Body=b"a" * 2048)
    stack.kms.rotate(stack.key_tag)
    runtime.engine.settings = stack.settings(max_object_bytes=1024)

    results = runtime.engine.rotate(
        [
            ObjectRef("some-other-bucket", "x.txt"),
            ObjectRef(stack.bucket, "broken.txt"),
            ObjectRef(stack.bucket, "big.txt"),
            ObjectRef(stack.bucket, "good.txt"),
        ]
    )

    other, broken, big, ok = results
    assert isinstance(other.error, BucketNotAllowedError) and not other.retryable
    assert broken.error is not None and broken.error.code == "malformed-token" and not broken.retryable
    assert big.error is not None and big.error.code == "too-large" and not big.retryable
    assert ok.status is Status.ROTATED
    assert body_of(stack, "broken.txt") == b"ncpkms:v1:not-base64!! and ncpkms:v0:AAAA"
    assert good != body_of(stack, "good.txt")


def test_per_object_key_tag_and_convergent_context(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    other_tag = stack.kms.create_key(convergent=True)
    context = base64.b64encode(b"tenant-42").decode()
    (token,) = runtime.kms.encrypt(other_tag, [b"secret"], context=context)
    s3.put_object(
        Bucket=stack.bucket,
        Key="c.txt",
        Body=f"v={token}".encode(),
        Metadata={"ncpkms-key-tag": other_tag, "ncpkms-context": context},
    )
    s3.put_object(
        Bucket=stack.bucket, Key="no-context.txt", Body=f"v={token}".encode(), Metadata={"ncpkms-key-tag": other_tag}
    )
    stack.kms.rotate(other_tag)

    with_context, without = runtime.engine.rotate(
        [ObjectRef(stack.bucket, "c.txt"), ObjectRef(stack.bucket, "no-context.txt")]
    )

    assert with_context.status is Status.ROTATED
    (new,) = [t.text for t in scan(body_of(stack, "c.txt"))[0]]
    assert runtime.kms.decrypt(other_tag, [new], context=context) == [b"secret"]
    assert without.status is Status.FAILED and not without.retryable  # KMS refuses: context required
    assert body_of(stack, "no-context.txt") == f"v={token}".encode()


def test_noncurrent_version_is_reported_not_rewritten(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    put_text(stack, runtime, "a.txt", [b"old"])
    old_version = s3.head_object(Bucket=stack.bucket, Key="a.txt")["VersionId"]
    put_text(stack, runtime, "a.txt", [b"new"])
    stack.kms.rotate(stack.key_tag)

    (result,) = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt", old_version)])

    assert result.status is Status.FAILED and result.error is not None
    assert result.error.code == "noncurrent-version" and not result.retryable
    assert len(s3.list_object_versions(Bucket=stack.bucket)["Versions"]) == 2


def test_missing_and_empty_objects_are_not_errors(stack: LocalStack, runtime: Runtime) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="empty", Body=b"")
    missing, empty = runtime.engine.rotate([ObjectRef(stack.bucket, "gone"), ObjectRef(stack.bucket, "empty")])
    assert missing.status is Status.MISSING and missing.error is None
    assert empty.status is Status.NO_TOKENS


@pytest.mark.parametrize(("budget", "big_gets"), [(128 * 1024 * 1024, 1), (1024 * 1024, 2)])
def test_every_object_is_read_with_a_single_get(
    stack: LocalStack, runtime: Runtime, budget: int, big_gets: int
) -> None:
    # Given a small text object, a bigger one and an envelope, whatever their names; the bodies read with
    # their heads may take a quarter of the engine's memory budget (256 KiB of a 1 MiB one)
    s3 = stack.client("s3")
    for key in ("first.txt", "small.bin"):
        put_text(stack, runtime, key, [b"a", b"b"])
    put_text(stack, runtime, "big.json", [f"{i}".encode() for i in range(5000)])  # ~350 KiB
    data_key = runtime.kms.create_custom_key(stack.key_tag)
    s3.put_object(Bucket=stack.bucket, Key="sealed.txt", Body=b"{}", Metadata={"wrapped": data_key.ciphertext})
    stack.kms.rotate(stack.key_tag)
    time.sleep(1.1)  # older than the second they were written in, as a sweep finds objects: copied without a HEAD
    runtime.engine.memory_budget_bytes = budget
    # a bucket that uses ACLs (new AWS and LocalStack buckets enforce bucket-owner ownership)
    s3.put_bucket_ownership_controls(
        Bucket=stack.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    assert runtime.engine.rotate([ObjectRef(stack.bucket, "first.txt")])[0].status is Status.ROTATED
    # the first write in the bucket reads the tags: rewrap may read them here, so from now on a read that
    # reports no tag count means no tags
    assert calls.count("GetObjectTagging") == 1
    calls.clear()

    # When
    results = runtime.engine.rotate([ObjectRef(stack.bucket, k) for k in ("small.bin", "big.json", "sealed.txt")])

    # Then all three rotate without a HEAD: the small one cost one GET and one PUT, and so did the big
    # one while the allowance held it; past the allowance its first GET stopped at the headers and it
    # was read again in full. Each write reads the ACL it restates; no tags are read.
    assert [r.status for r in results] == [Status.ROTATED] * 3
    writes = ["PutObject", "PutObject", "CopyObject"]
    assert sorted(calls) == sorted(["GetObject"] * (2 + big_gets) + writes + ["GetObjectAcl"] * 3)
    assert {t.version for t in scan(body_of(stack, "big.json"))[0]} == {2}
    assert s3.head_object(Bucket=stack.bucket, Key="sealed.txt")["Metadata"]["wrapped"].startswith("ncpkms:v2:")


def test_a_reply_left_behind_at_an_old_version_is_retried_not_reported_current(
    stack: LocalStack, runtime: Runtime
) -> None:
    # Given two objects whose tokens travel in one request, and a reply that relabels one of them
    # back to v1 (the emulator never goes below v1): the token looks "current" but is not
    put_text(stack, runtime, "a.txt", [b"a"])
    put_text(stack, runtime, "b.txt", [b"b"])
    stack.kms.rotate(stack.key_tag)
    stack.kms.inject("lower-version", times=10, key_tag=stack.key_tag)
    runtime.kms.max_attempts = 1

    results = runtime.engine.rotate([ObjectRef(stack.bucket, "a.txt"), ObjectRef(stack.bucket, "b.txt")])

    statuses = sorted((r.status, r.error.code if r.error else "") for r in results)
    assert statuses == [(Status.FAILED, "kms-invalid-reply"), (Status.ROTATED, "")]
    assert all(r.retryable for r in results if r.status is Status.FAILED)


def test_a_rotated_object_costs_one_read_and_one_write_and_tag_counts_are_trusted_only_once_shown(
    stack: LocalStack, runtime: Runtime
) -> None:
    # Given a bucket that enforces bucket-owner ownership (no ACLs), no text suffixes declared: a
    # tagged text object, an untagged one and an envelope
    s3 = stack.client("s3")
    s3.put_bucket_ownership_controls(
        Bucket=stack.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    put_text(stack, runtime, "tagged.txt", [b"a"], Tagging="team=blue")
    put_text(stack, runtime, "plain.txt", [b"b"])
    s3.put_object(
        Bucket=stack.bucket,
        Key="sealed.bin",
        Body=b"\x00",
        Metadata={"dek": runtime.kms.encrypt(stack.key_tag, [b"k"])[0]},
    )
    stack.kms.rotate(stack.key_tag)
    time.sleep(1.1)  # older than the second they were written in, as a sweep finds objects: copied without a HEAD
    calls: list[str] = []
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    # When the tagged object is rotated first, then the other two
    (tagged,) = runtime.engine.rotate([ObjectRef(stack.bucket, "tagged.txt")])
    first = list(calls)
    plain, sealed = runtime.engine.rotate([ObjectRef(stack.bucket, k) for k in ("plain.txt", "sealed.bin")])

    # Then each object cost one GET and one write, no HEAD; the tags were read where the GET reported
    # some, and for the untagged object only where the backend was not seen to report counts
    assert [r.status for r in (tagged, plain, sealed)] == [Status.ROTATED] * 3
    reports_counts = "TagCount" in s3.get_object(Bucket=stack.bucket, Key="tagged.txt")
    assert first == ["GetObject", "GetBucketOwnershipControls", "GetObjectTagging", "PutObject"]
    untagged_reads = [] if reports_counts else ["GetObjectTagging"]
    assert sorted(calls[len(first) :]) == sorted(["GetObject", "PutObject", "GetObject", "CopyObject", *untagged_reads])
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="tagged.txt")["TagSet"] == [{"Key": "team", "Value": "blue"}]
    assert s3.get_object_tagging(Bucket=stack.bucket, Key="plain.txt")["TagSet"] == []
