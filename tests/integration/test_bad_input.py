"""Bad input through the real rotate handler: every malformed event, odd key and odd body gets a clear,
classified error (retryable or permanent, with a reason code) and touches nothing else.
(The unrecognised top-level shapes are in test_routes.py.)"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from functions.rotate.app import lambda_handler as rotate
from rewrap.app.runtime import get_runtime
from rewrap.core.tokens import MAX_TOKEN_CHARS, scan, token_version
from rewrap.errors import UnsupportedEventError
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event, s3_notification, sqs_event
from rewrap_local.stack import LocalStack

LONG_KEY = "long/" + "k" * 1019  # exactly S3's 1024-byte limit
TOO_LONG_KEY = "long/" + "k" * 1020
_clients: dict[tuple[str, str], Any] = {}


def client(stack: LocalStack, service: str) -> Any:
    """One client per service for the session's moto server (building one costs ~0.1 s)."""
    if (stack.moto_url, service) not in _clients:
        _clients[(stack.moto_url, service)] = stack.client(service)
    return _clients[(stack.moto_url, service)]


@pytest.fixture
def env(handler_env: LocalStack) -> Iterator[LocalStack]:
    """The handler's stack with a versioned bucket, so any write at all shows as a new version."""
    client(handler_env, "s3").put_bucket_versioning(
        Bucket=handler_env.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    yield handler_env


def versions(stack: LocalStack) -> list[tuple[str, str, bool]]:
    """Every version and delete marker in the bucket."""
    listing = client(stack, "s3").list_object_versions(Bucket=stack.bucket)
    entries = [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    return sorted((e["Key"], e["VersionId"], "ETag" in e) for e in entries)


def put_token_object(stack: LocalStack, key: str, secret: bytes = b"s", **extra: Any) -> str:
    (token,) = get_runtime().kms.encrypt(stack.key_tag, [secret])
    client(stack, "s3").put_object(Bucket=stack.bucket, Key=key, Body=f"v={token}\n".encode(), **extra)
    return token


def body(stack: LocalStack, key: str) -> bytes:
    return client(stack, "s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def parked_reasons(stack: LocalStack) -> dict[str, str]:
    """Dead-letter queue: message body → the rewrap-failure reason it was parked with."""
    queue = stack.dead_letter_queue_url
    response = client(stack, "sqs").receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    messages = response.get("Messages", [])
    return {m["Body"]: m["MessageAttributes"]["rewrap-failure"]["StringValue"] for m in messages}


def sqs_records(*bodies: Any) -> dict[str, Any]:
    messages = [
        {"MessageId": f"msg-{i}", "ReceiptHandle": f"rh-{i}", "Body": b if isinstance(b, str) else json.dumps(b)}
        for i, b in enumerate(bodies)
    ]
    return sqs_event(messages, "arn:aws:sqs:ap-northeast-2:123456789012:rewrap-rotate")


def batch_event(stack: LocalStack, keys: list[str], schema: str = "2.0", bucket: str | None = None) -> dict[str, Any]:
    event = load_event(f"batch-ops-{schema}.json")
    template = event["tasks"][0]
    event["tasks"] = []
    for index, key in enumerate(keys):
        task = dict(template, taskId=f"t{index}", s3Key=quote_plus(key, safe="/"), s3VersionId=None)
        if schema == "1.0":
            task["s3BucketArn"] = f"arn:aws:s3:::{bucket or stack.bucket}"
        else:
            task["s3Bucket"] = bucket or stack.bucket
        event["tasks"].append(task)
    return event


def outcomes(response: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """taskId → (resultCode, reason code or status word)."""
    return {r["taskId"]: (r["resultCode"], r["resultString"].split(":", 1)[0]) for r in response["results"]}


# --- whole events that cannot be understood ------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "mentions"),
    [
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}, "object.key"),
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": {"object": None}}, "object.key"),
        ({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}, "s3.object.key"),
        (s3_notification("b", [TOO_LONG_KEY]), "1024-byte"),
        ({"invocationSchemaVersion": "2.0", "tasks": {"taskId": "t"}}, "no task list"),
        ({"invocationSchemaVersion": "2.0", "job": {"userArguments": {"dryRun": "maybe"}}, "tasks": []}, "dryRun"),
        ({"bucket": "", "keys": ["a"]}, "bucket must be a non-empty string"),
        ({"bucket": "b", "keys": [42]}, "key must be a non-empty string"),
        ({"bucket": "b", "keys": [{"versionId": "v"}]}, "key must be a non-empty string"),
        ([{"bucket": "b", "keys": ["a"]}], "received list"),
        ("rotate everything", "received str"),
        (None, "received NoneType"),
    ],
)
def test_malformed_event_raises_a_clear_permanent_error_and_touches_nothing(
    env: LocalStack, event: Any, mentions: str
) -> None:
    put_token_object(env, "a")
    env.kms.rotate(env.key_tag)
    before, requests = versions(env), sum(env.kms.stats.snapshot()["requests"].values())

    with pytest.raises(UnsupportedEventError) as caught:
        rotate(event, LambdaContext())

    assert caught.value.code == "unsupported-event" and not caught.value.retryable
    assert mentions in str(caught.value)
    assert versions(env) == before
    assert sum(env.kms.stats.snapshot()["requests"].values()) == requests  # nothing was even asked


def test_empty_batches_answer_cleanly_and_touch_nothing(env: LocalStack) -> None:
    put_token_object(env, "a")
    env.kms.rotate(env.key_tag)
    before = versions(env)
    empty_tasks = dict(load_event("batch-ops-2.0.json"), tasks=[])

    batch = rotate(empty_tasks, LambdaContext())
    sqs = rotate(sqs_records({"Records": []}, {"Records": [{"eventSource": "aws:s3"}]}), LambdaContext())

    assert batch["results"] == [] and batch["treatMissingKeysAs"] == "TemporaryFailure"
    assert sqs == {"batchItemFailures": []} and parked_reasons(env) == {}  # nothing created: nothing to do
    assert versions(env) == before


# --- malformed units: each fails alone, permanently, with its reason -----------------------------
def test_each_malformed_sqs_message_is_parked_with_its_reason(env: LocalStack) -> None:
    put_token_object(env, "good.txt")
    env.kms.rotate(env.key_tag)
    eventbridge = load_event("eventbridge-s3.json")
    del eventbridge["detail"]["object"]["key"]
    bad = {
        json.dumps({"Type": "Notification", "Message": "{not json"}): "SNS notification Message is not JSON",
        json.dumps(eventbridge): "EventBridge S3 event lacks detail.bucket.name or detail.object.key",
        json.dumps([1, 2]): "message body is a JSON list",
        json.dumps({"Records": [{"eventSource": "aws:kinesis"}]}): "not an S3 notification",
        json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}): "s3.object.key",
        json.dumps({"bucket": env.bucket, "keys": [TOO_LONG_KEY]}): "1024-byte",
        json.dumps({"bucket": env.bucket, "keys": []}): "keys must be a non-empty list",
        # one SQS batch is one invocation: a per-message dry run is refused, never written
        json.dumps({"bucket": env.bucket, "keys": ["good.txt"], "dryRun": True}): "honoured only when rotate",
        "": "SQS message body is not JSON",
    }
    before = versions(env)

    response = rotate(sqs_records(s3_notification(env.bucket, ["good.txt"]), *bad), LambdaContext())

    assert response == {"batchItemFailures": []}  # permanent: parked, not retried
    reasons = parked_reasons(env)
    reasons.update(parked_reasons(env))  # the DLQ hands out at most 10 at a time
    assert reasons.keys() == bad.keys()
    for message_body, mentions in bad.items():
        assert reasons[message_body].startswith("unsupported-event: ") and mentions in reasons[message_body]
    assert token_version(scan(body(env, "good.txt"))[0][0].text) == 2
    assert len(versions(env)) == len(before) + 1  # only good.txt got a new version


def test_each_malformed_batch_operations_task_fails_alone(env: LocalStack) -> None:
    put_token_object(env, "good.txt")
    env.kms.rotate(env.key_tag)
    event = batch_event(env, ["good.txt"])
    template = event["tasks"][0]
    event["tasks"] += [
        {k: v for k, v in template.items() if k != "s3Key"} | {"taskId": "no-key"},
        {k: v for k, v in template.items() if k != "s3Bucket"} | {"taskId": "no-bucket"},
        template | {"taskId": "empty-key", "s3Key": ""},
        template | {"taskId": "long-key", "s3Key": TOO_LONG_KEY},
        "not a task",
    ]

    response = rotate(event, LambdaContext())

    results = {r["taskId"]: (r["resultCode"], r["resultString"]) for r in response["results"]}
    assert results.pop("t0")[0] == "Succeeded"
    assert results == {
        "no-key": ("PermanentFailure", "unsupported-event: key must be a non-empty string"),
        "no-bucket": ("PermanentFailure", "unsupported-event: bucket must be a non-empty string"),
        "empty-key": ("PermanentFailure", "unsupported-event: key must be a non-empty string"),
        "long-key": ("PermanentFailure", "unsupported-event: key is longer than S3's 1024-byte limit"),
        "": ("PermanentFailure", "unsupported-event: malformed task"),
    }


# --- odd key names through every route ------------------------------------------------------------
TARGETS = ["dir/a b.txt", "dir/a+b.txt", "dir/100% sure.txt", "dir/x%2By.txt", "dir/ünïcödé 키 😀.txt", LONG_KEY]
# What a missing, doubled or wrong decoding of a target would name instead; they must stay untouched.
DECOYS = ["dir/a%20b.txt", "dir/a%2Bb.txt", "dir/x+y.txt", "dir/x y.txt", "dir/100%25 sure.txt"]


def _route_events(route: str, stack: LocalStack) -> list[dict[str, Any]]:
    bucket = stack.bucket
    if route == "s3":
        return [s3_notification(bucket, TARGETS)]
    if route == "sqs-s3":
        return [sqs_records(*(s3_notification(bucket, [k]) for k in TARGETS))]
    if route == "sqs-sns":
        wrapped = {"Type": "Notification", "Message": json.dumps(s3_notification(bucket, TARGETS))}
        return [sqs_records(wrapped)]
    if route in ("eventbridge", "sqs-eventbridge"):
        events = []
        for key in TARGETS:  # keys percent-encoded, as LocalStack (modelled on AWS) sends them
            event = load_event("eventbridge-s3.json")
            event["detail"]["bucket"]["name"], event["detail"]["object"]["key"] = bucket, quote(key, safe="/")
            events.append(event)
        return events if route == "eventbridge" else [sqs_records(*events)]
    if route.startswith("batch-ops"):
        return [batch_event(stack, TARGETS, schema=route.rsplit("-", 1)[1])]
    return [{"bucket": bucket, "keys": TARGETS}]


@pytest.mark.parametrize(
    "route", ["s3", "sqs-s3", "sqs-sns", "sqs-eventbridge", "eventbridge", "batch-ops-1.0", "batch-ops-2.0", "request"]
)
def test_keys_with_spaces_plus_percent_unicode_and_1024_bytes_reach_exactly_their_object(
    env: LocalStack, route: str
) -> None:
    for index, key in enumerate(TARGETS + DECOYS):
        put_token_object(env, key, f"secret-{index}".encode())
    env.kms.rotate(env.key_tag)
    decoys = {key: body(env, key) for key in DECOYS}

    for event in _route_events(route, env):
        response = rotate(event, LambdaContext())
        assert not response.get("batchItemFailures") and not response.get("failed"), response
        assert {r["resultCode"] for r in response.get("results", [])} <= {"Succeeded"}, response

    kms = get_runtime().kms
    for index, key in enumerate(TARGETS):
        (token,) = scan(body(env, key))[0]
        assert token.version == 2, key
        assert kms.decrypt(env.key_tag, [token.text]) == [f"secret-{index}".encode()]
    assert {key: body(env, key) for key in DECOYS} == decoys


# --- odd objects: one Batch Operations invocation, one classified result each -------------------
def test_odd_objects_each_get_a_classified_result_and_bad_ones_stay_untouched(
    env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWRAP_MAX_OBJECT_BYTES", "65536")
    s3, tag = client(env, "s3"), env.key_tag
    kms = get_runtime().kms
    convergent = env.kms.create_key(convergent=True)
    (convergent_token,) = kms.encrypt(convergent, [b"c"], context=base64.b64encode(b"ctx").decode())
    foreign = env.kms.create_key()
    (foreign_token,) = kms.encrypt(foreign, [b"f"])
    good = put_token_object(env, "good.txt", b"good")
    (escaped_source,) = kms.encrypt(tag, [b"escaped"])
    while "/" not in escaped_source:
        (escaped_source,) = kms.encrypt(tag, [b"escaped"])
    objects: dict[str, tuple[bytes, dict[str, str]]] = {
        "empty.bin": (b"", {}),
        "binary-no-token.bin": (b"\xff\xfe\x00\x80 ncpkms: is a word \xc3", {}),
        "binary-with-token.bin": (b"\xff\x00" + good.encode() + b"\x80\xfe", {}),
        "escaped.json": (json.dumps({"k": escaped_source}).replace("/", "\\/").encode(), {}),
        "broken-base64.txt": (b"x=ncpkms:v1:abc!", {}),
        "version-zero.txt": (b"ncpkms:v0:AAAA", {}),
        "version-leading-zero.txt": (b"ncpkms:v01:AAAA", {}),
        "version-ten-digits.txt": (b"ncpkms:v1234567890:AAAA", {}),
        "oversized-token.txt": (b"ncpkms:v1:" + b"A" * (MAX_TOKEN_CHARS - 6), {}),
        "too-large.txt": (good.encode() + b"#" * 70_000, {}),
        "unknown-version.txt": (b"ncpkms:v999999999:" + base64.b64encode(bytes(40)), {}),
        "foreign-token.txt": (foreign_token.encode(), {}),
        "unknown-tag.txt": (good.encode(), {"ncpkms-key-tag": "no-such-key-tag"}),
        "convergent-no-context.txt": (convergent_token.encode(), {"ncpkms-key-tag": convergent}),
        "context-not-base64.txt": (convergent_token.encode(), {"ncpkms-key-tag": convergent, "ncpkms-context": "%"}),
        "context-too-long.txt": (
            convergent_token.encode(),
            {"ncpkms-key-tag": convergent, "ncpkms-context": base64.b64encode(bytes(51)).decode()},
        ),
        "broken-envelope.bin": (b"sealed", {"wrapped-key": "ncpkms:v1:%%%%"}),
    }
    for key, (data, metadata) in objects.items():
        s3.put_object(Bucket=env.bucket, Key=key, Body=data, Metadata=metadata)
    env.kms.rotate(tag)
    env.kms.rotate(convergent)
    before = versions(env)
    keys = ["good.txt", *objects]
    event = batch_event(env, keys)
    event["tasks"].append(batch_event(env, ["good.txt"], bucket="someone-elses-bucket")["tasks"][0] | {"taskId": "x"})

    response = rotate(event, LambdaContext())

    got = {keys[int(t[1:])] if t != "x" else "other-bucket": o for t, o in outcomes(response).items()}
    expected = {
        "good.txt": ("Succeeded", "rotated"),
        "empty.bin": ("Succeeded", "no-tokens"),
        "binary-no-token.bin": ("Succeeded", "no-tokens"),
        "binary-with-token.bin": ("Succeeded", "rotated"),
        "escaped.json": ("Succeeded", "rotated"),
        "broken-base64.txt": ("PermanentFailure", "malformed-token"),
        "version-zero.txt": ("PermanentFailure", "malformed-token"),
        "version-leading-zero.txt": ("PermanentFailure", "malformed-token"),
        "version-ten-digits.txt": ("PermanentFailure", "malformed-token"),
        "oversized-token.txt": ("PermanentFailure", "malformed-token"),
        "too-large.txt": ("PermanentFailure", "too-large"),
        # NCP refuses these one by one; the good objects batched with them still rotate
        "unknown-version.txt": ("PermanentFailure", "kms-rejected"),
        "foreign-token.txt": ("PermanentFailure", "kms-rejected"),
        "unknown-tag.txt": ("PermanentFailure", "kms-rejected"),
        "convergent-no-context.txt": ("PermanentFailure", "kms-rejected"),
        "context-not-base64.txt": ("PermanentFailure", "bad-context"),
        "context-too-long.txt": ("PermanentFailure", "bad-context"),
        "broken-envelope.bin": ("PermanentFailure", "malformed-token"),
        "other-bucket": ("PermanentFailure", "bucket-not-allowed"),
    }
    assert got == expected
    reasons = {r["taskId"]: r["resultString"] for r in response["results"]}
    assert "byte 2: token body is not padded standard base64" in reasons[f"t{keys.index('broken-base64.txt')}"]
    assert "43,746" in reasons[f"t{keys.index('oversized-token.txt')}"]
    assert "key tag not found" in reasons[f"t{keys.index('unknown-tag.txt')}"]
    assert "context is required" in reasons[f"t{keys.index('convergent-no-context.txt')}"]

    # only the four rotated objects got a new version; every byte around their tokens is kept
    rotated = {"good.txt", "binary-with-token.bin", "escaped.json"}
    new_versions = [v for v in versions(env) if v not in before]
    assert sorted(k for k, _, _ in new_versions) == sorted(rotated)
    data = body(env, "binary-with-token.bin")
    assert data.startswith(b"\xff\x00") and data.endswith(b"\x80\xfe")
    escaped = body(env, "escaped.json")
    (new_token,) = scan(escaped)[0]
    assert new_token.version == 2 and b"/" not in escaped.replace(b"\\/", b"")  # still escaped
    assert kms.decrypt(tag, [json.loads(escaped)["k"]]) == [b"escaped"]


def test_permanent_failures_on_the_async_routes_are_reported_not_raised(env: LocalStack) -> None:
    # S3 notifications and EventBridge events invoked directly are retried by Lambda only when
    # the handler raises; a permanent failure is logged and counted instead of retried forever
    client(env, "s3").put_object(Bucket=env.bucket, Key="broken.txt", Body=b"ncpkms:v1:@@@@")
    before = versions(env)
    eventbridge = load_event("eventbridge-s3.json")
    eventbridge["detail"]["bucket"]["name"], eventbridge["detail"]["object"]["key"] = "not-allowed", "k"

    direct = rotate(s3_notification(env.bucket, ["broken.txt"]), LambdaContext())
    other = rotate(eventbridge, LambdaContext())

    assert (direct["permanent"], direct["retryable"], direct["failed"]) == (1, 0, 1)
    assert (other["permanent"], other["retryable"]) == (1, 0)
    assert versions(env) == before
