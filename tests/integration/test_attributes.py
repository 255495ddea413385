"""Everything S3 holds about an object survives its rotation, on every write path: PutObject (text),
self-CopyObject (envelope), multipart rewrite (streamed text) and multipart copy (large envelope).
Each case writes an object with one attribute, rotates it and reads the attribute back.

Runs on moto and on LocalStack (``make test-localstack``). Where an emulator is known to drop an
attribute that S3 keeps (``EMULATOR_GAPS``), the case checks the write request instead: it must
carry the attribute's headers with the values read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectRef
from rewrap.core.tokens import scan
from rewrap_local.stack import REGION, LocalStack

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
PATHS = ("put", "copy", "multipart-rewrite", "multipart-copy")
WRITES = {
    "put": {"PutObject"},
    "copy": {"CopyObject"},
    "multipart-rewrite": {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"},
    "multipart-copy": {"UploadPartCopy", "CompleteMultipartUpload"},
}
OTHER_ACCOUNT = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"  # a canonical user id
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@dataclass
class Case:
    """How to write the attribute (put_object parameters and raw headers) and how to read it back."""

    params: Callable[[Any], dict[str, Any]]
    read: Callable[[Any, str, str], Any]
    headers: dict[str, str] | None = None


def _head(field: str) -> Callable[[Any, str, str], Any]:
    return lambda s3, bucket, key: s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get(field)


def _grants(s3: Any, bucket: str, key: str) -> set[tuple[str, str]]:
    grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI", ""), g["Permission"]) for g in grants}


def _checksums(s3: Any, bucket: str, key: str) -> set[str]:
    """The algorithms of the checksums S3 holds (the values change with the body; the algorithm must not)."""
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return {name.removeprefix("Checksum") for name in head if name.startswith("Checksum") and name != "ChecksumType"}


def _tags(s3: Any, bucket: str, key: str) -> set[tuple[str, str]]:
    return {(t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def _raw_header(name: str) -> Callable[[Any, str, str], Any]:
    return lambda s3, bucket, key: s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"].get(name)


def _content(s3: Any, bucket: str, key: str) -> tuple[Any, ...]:
    head = s3.head_object(Bucket=bucket, Key=key)
    fields = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl")
    return tuple(head.get(f) for f in fields)


def _lock(s3: Any, bucket: str, key: str) -> tuple[Any, ...]:
    # HEAD tells all three to a caller allowed GetObjectRetention / GetObjectLegalHold (moto's
    # GetObjectRetention answers 500 in server mode).
    head = s3.head_object(Bucket=bucket, Key=key)
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate"), head.get("ObjectLockLegalHoldStatus")


def _sse(s3: Any, bucket: str, key: str) -> tuple[Any, ...]:
    head = s3.head_object(Bucket=bucket, Key=key)
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"), head.get("BucketKeyEnabled")


_RETAIN_UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
CASES: dict[str, Case] = {
    "acl grants": Case(
        lambda kms: {"GrantRead": f'uri="{ALL_USERS}", id="{OTHER_ACCOUNT}"', "GrantReadACP": f'id="{OTHER_ACCOUNT}"'},
        _grants,
    ),
    **{
        f"checksum {algorithm}": Case(lambda kms, a=algorithm: {"ChecksumAlgorithm": a}, _checksums)
        for algorithm in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
    },
    "expires": Case(lambda kms: {}, _raw_header("expires"), headers={"Expires": "Wed, 21 Oct 2026 07:28:00 GMT"}),
    "website redirect": Case(lambda kms: {"WebsiteRedirectLocation": "/moved/here"}, _head("WebsiteRedirectLocation")),
    "content headers": Case(
        lambda kms: {
            "ContentType": "application/x-ndjson",
            "ContentEncoding": "identity",
            "ContentLanguage": "ko-KR",
            "ContentDisposition": 'attachment; filename="rows.ndjson"',
            "CacheControl": "no-store",
        },
        _content,
    ),
    "storage class": Case(lambda kms: {"StorageClass": "STANDARD_IA"}, _head("StorageClass")),
    "tags": Case(lambda kms: {"Tagging": "env=prod&owner=sec"}, _tags),
    "sse-kms key + bucket key": Case(
        lambda kms: {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms, "BucketKeyEnabled": True}, _sse
    ),
    "dsse-kms key": Case(lambda kms: {"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": kms}, _sse),
    "object lock": Case(
        lambda kms: {
            "ObjectLockMode": "GOVERNANCE",
            "ObjectLockRetainUntilDate": _RETAIN_UNTIL,
            "ObjectLockLegalHoldStatus": "ON",
        },
        _lock,
    ),
}


# The request headers that carry an attribute, and where each emulator drops what S3 keeps.
SENT = {
    "expires": ("Expires",),
    "sse-kms key + bucket key": (
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-bucket-key-enabled",
    ),
    "object lock": ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold"),
}
EMULATOR_GAPS = {("moto", path, "expires") for path in PATHS} | {
    ("moto", path, attribute)
    for path in ("multipart-rewrite", "multipart-copy")
    for attribute in ("sse-kms key + bucket key", "object lock")
}
WRITE_REQUESTS = {"PutObject", "CopyObject", "CreateMultipartUpload"}


@pytest.fixture
def bucket(stack: LocalStack, runtime: Runtime) -> str:
    """A bucket that uses ACLs (ObjectWriter) and Object Lock, allowed to the engine."""
    name = f"{stack.bucket}-attrs"
    s3 = stack.client("s3")
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectLockEnabledForBucket=True
    )
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    runtime.engine.settings = stack.settings(
        buckets=frozenset({stack.bucket, name}),
        stream_threshold_bytes=1 * MiB,
        segment_bytes=6 * MiB,
        multipart_copy_threshold_bytes=6 * MiB,
    )
    runtime.engine.store = S3Store(runtime.s3, multipart_copy_threshold=6 * MiB)
    return name


@pytest.fixture
def kms_key(stack: LocalStack) -> str:
    return stack.client("kms").create_key(Description="rewrap attribute tests")["KeyMetadata"]["Arn"]


def put_object(s3: Any, headers: dict[str, str] | None, **params: Any) -> None:
    """put_object with extra raw headers (values boto3 would not let through, such as a non-date Expires)."""
    if not headers:
        s3.put_object(**params)
        return

    def add(request: Any, **_: Any) -> None:
        for name, value in headers.items():
            request.headers[name] = value

    s3.meta.events.register("before-sign.s3.PutObject", add, unique_id="test-raw-headers")
    try:
        s3.put_object(**params)
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", unique_id="test-raw-headers")


def seed(stack: LocalStack, runtime: Runtime, bucket: str, path: str, key: str, case: Case, kms_key: str) -> None:
    s3 = stack.client("s3")
    params = case.params(kms_key)
    tokens = runtime.kms.encrypt(stack.key_tag, [b"alpha", b"beta"])
    if path in ("put", "multipart-rewrite"):
        body = ("\n".join(tokens) + "\n").encode()
        if path == "multipart-rewrite":
            body += b"#" * (7 * MiB)  # streamed: the token segment is uploaded, the rest copied
        put_object(s3, case.headers, Bucket=bucket, Key=key, Body=body, **params)
    else:
        body = b"sealed" * (7 * MiB // 6 if path == "multipart-copy" else 1)
        put_object(s3, case.headers, Bucket=bucket, Key=key, Body=body, Metadata={"wrapped": tokens[0]}, **params)


def rotated_version(stack: LocalStack, bucket: str, key: str) -> int:
    s3 = stack.client("s3")
    head = s3.head_object(Bucket=bucket, Key=key)
    if "wrapped" in head["Metadata"]:
        return int(head["Metadata"]["wrapped"].split(":")[1][1:])
    start = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()
    return min(t.version for t in scan(start)[0])


# What an emulator does not store at all (the attribute is absent before rotation): nothing to preserve there.
def _stored(before: Any) -> bool:
    return before not in (None, (None, None, None), set(), ())  # (None, None, None): nothing of SSE or lock


@pytest.mark.parametrize("attribute", list(CASES))
@pytest.mark.parametrize("path", PATHS)
def test_attribute_survives_rotation(
    stack: LocalStack, runtime: Runtime, bucket: str, kms_key: str, path: str, attribute: str
) -> None:
    # Given an object with the attribute, its key rotated since
    case = CASES[attribute]
    key = f"{path}/{attribute.replace(' ', '-')}"
    s3 = stack.client("s3")
    seed(stack, runtime, bucket, path, key, case, kms_key)
    gap = (stack.backend, path, attribute) in EMULATOR_GAPS
    before = case.read(s3, bucket, key)
    assert gap or _stored(before), f"{stack.backend} did not store {attribute!r}: add it to EMULATOR_GAPS"
    expected = expected_headers(s3, bucket, key, case, SENT.get(attribute, ())) if gap else {}
    if gap and not _stored(before) and case.headers:
        answer_as_s3(runtime.s3, case.headers)
    stack.kms.rotate(stack.key_tag)

    calls: list[str] = []
    sent: dict[str, str] = {}
    runtime.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    record_writes(runtime.s3, sent)

    # When
    (result,) = runtime.engine.rotate([ObjectRef(bucket, key)])

    # Then it was rotated on the expected write path and the attribute reads back the same
    assert result.status is Status.ROTATED, result.to_dict()
    assert WRITES[path] <= set(calls) and not (set().union(*WRITES.values()) - WRITES[path]) & set(calls)
    assert rotated_version(stack, bucket, key) == 2
    if gap:  # the emulator drops it: the write must have restated it all the same
        assert expected and None not in expected.values()
        assert {name: sent.get(name) for name in expected} == expected
    else:
        assert case.read(s3, bucket, key) == before


def record_writes(client: Any, sent: dict[str, str]) -> None:
    """The headers of the write requests (PutObject, CopyObject, CreateMultipartUpload), as sent."""

    def record(request: Any, **_: Any) -> None:
        for name, value in request.headers.items():
            sent[name.lower()] = value.decode() if isinstance(value, bytes) else value

    for op in WRITE_REQUESTS:
        client.meta.events.register(f"before-send.s3.{op}", record)


def answer_as_s3(client: Any, headers: dict[str, str]) -> None:
    """A strict layer for what an emulator does not store: HEAD and GET answer with ``headers``, as S3
    (which keeps them) would."""

    def add(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if operation_model.name in ("HeadObject", "GetObject"):
            for name, value in headers.items():
                response_dict["headers"][name] = value

    # registered on botocore's own level (before-parse.s3.*), ahead of the handler that sets a
    # non-date Expires aside as ExpiresString
    client.meta.events.register_first("before-parse.s3.*", add)


def expected_headers(s3: Any, bucket: str, key: str, case: Case, names: tuple[str, ...]) -> dict[str, str]:
    """What the write must send for an attribute: the values S3 holds (those seeded, where the
    emulator keeps nothing)."""
    headers = {**(case.headers or {}), **s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]}
    return {name.lower(): headers.get(name, headers.get(name.lower())) for name in names}


@pytest.mark.parametrize("path", PATHS)
def test_a_raw_expires_value_is_restated_verbatim(
    stack: LocalStack, runtime: Runtime, bucket: str, kms_key: str, path: str
) -> None:
    # Given an object whose Expires is not a date: S3 keeps any value; neither emulator does (moto
    # drops Expires, LocalStack refuses a non-date), so a strict layer answers HEAD/GET as S3 would
    # and keeps the value off the emulator's write
    raw = "never (see retention policy 7)"
    key = f"{path}/raw-expires"
    seed(stack, runtime, bucket, path, key, Case(lambda kms: {}, _raw_header("expires")), kms_key)
    answer_as_s3(runtime.s3, {"Expires": raw})
    sent: dict[str, str] = {}

    def keep_off_the_emulator(request: Any, **_: Any) -> None:
        if request.headers.get("Expires"):
            value = request.headers["Expires"]
            sent["expires"] = value.decode() if isinstance(value, bytes) else value
            del request.headers["Expires"]

    for op in WRITE_REQUESTS:
        runtime.s3.meta.events.register(f"before-send.s3.{op}", keep_off_the_emulator)
    stack.kms.rotate(stack.key_tag)

    # When
    (result,) = runtime.engine.rotate([ObjectRef(bucket, key)])

    # Then the write carried the value exactly as read
    assert result.status is Status.ROTATED, result.to_dict()
    assert sent == {"expires": raw}
