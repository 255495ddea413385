"""The real rotate handler on every sample payload in events/, against moto and the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from rewrap.app.runtime import get_runtime
from rewrap.core.events import Trigger, parse
from rewrap.core.tokens import scan, token_version
from rewrap.errors import UnsupportedEventError
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event, s3_notification
from rewrap_local.stack import LocalStack
from tests.observed import service_log

# The objects the sample events name, and the secrets each holds.
SAMPLE_OBJECTS = {
    "secrets/api-token.txt": [b"sk-1"],
    "docs/config.json": [b"db", b"smtp"],
    "data/records.ndjson": [f"row-{i}".encode() for i in range(40)],
    "docs/hello world+ünï.env": [b"api", b"password"],
}
ENVELOPE = "envelopes/report.bin"


@dataclass
class Seeded:
    stack: LocalStack
    data_key: bytes

    def tokens(self, key: str) -> list[str]:
        s3 = self.stack.client("s3")
        if key == ENVELOPE:
            return [s3.head_object(Bucket=self.stack.bucket, Key=key)["Metadata"]["wrapped-key"]]
        return [t.text for t in scan(s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read())[0]]

    def etags(self) -> dict[str, str]:
        s3 = self.stack.client("s3")
        return {k: s3.head_object(Bucket=self.stack.bucket, Key=k)["ETag"] for k in [*SAMPLE_OBJECTS, ENVELOPE]}

    def materialize(self, event: dict[str, Any]) -> dict[str, Any]:
        """The sample with our bucket, and its version ids swapped for the objects' real ones."""
        text = json.dumps(event).replace("rewrap-demo-bucket", self.stack.bucket)
        s3 = self.stack.client("s3")
        for ref in parse(json.loads(text)).refs:
            if ref.version_id:
                real = s3.head_object(Bucket=self.stack.bucket, Key=ref.key)["VersionId"]
                text = text.replace(ref.version_id, real)
        return json.loads(text)


@pytest.fixture
def seeded(handler_env: LocalStack) -> Iterator[Seeded]:
    stack = handler_env
    kms = get_runtime().kms
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    for key, secrets in SAMPLE_OBJECTS.items():
        body = "\n".join(json.dumps({"secret": t}) for t in kms.encrypt(stack.key_tag, secrets))
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body.encode())
    data_key = kms.create_custom_key(stack.key_tag, request_plain_key=True)
    s3.put_object(Bucket=stack.bucket, Key=ENVELOPE, Body=b"\x00sealed", Metadata={"wrapped-key": data_key.ciphertext})
    stack.kms.rotate(stack.key_tag)
    assert data_key.plaintext is not None
    yield Seeded(stack, data_key.plaintext)


ROUTES = {
    "s3-put.json": Trigger.S3,
    "sqs-s3.json": Trigger.SQS,
    "sqs-sns-s3.json": Trigger.SQS,
    "sqs-eventbridge-s3.json": Trigger.SQS,
    "eventbridge-s3.json": Trigger.EVENTBRIDGE,
    "batch-ops-1.0.json": Trigger.BATCH_OPERATIONS,
    "batch-ops-2.0.json": Trigger.BATCH_OPERATIONS,
    "rotate-request.json": Trigger.ROTATE_REQUEST,
    "sqs-rotate-request.json": Trigger.SQS,
    "sqs-mixed.json": Trigger.SQS,
}


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_route_rotates_exactly_what_it_names(seeded: Seeded, name: str) -> None:
    # Given a real-shaped sample for this route
    event = seeded.materialize(load_event(name))
    invocation = parse(event)
    named = {ref.key for ref in invocation.refs}
    assert invocation.kind is ROUTES[name] and named
    before = seeded.etags()

    # When the real handler runs on it
    response = rotate(event, LambdaContext())

    # Then every named object is at v2 with its plaintext intact, and nothing else was touched
    kms = get_runtime().kms
    after = seeded.etags()
    for key, secrets in SAMPLE_OBJECTS.items():
        tokens = seeded.tokens(key)
        if key in named:
            assert {token_version(t) for t in tokens} == {2}, key
            assert kms.decrypt(seeded.stack.key_tag, tokens) == secrets
        else:
            assert after[key] == before[key], key
    if ENVELOPE in named:
        assert kms.decrypt(seeded.stack.key_tag, seeded.tokens(ENVELOPE)) == [seeded.data_key]
    else:
        assert after[ENVELOPE] == before[ENVELOPE]
    _assert_response_shape(invocation.kind, event, response, len(named))


def _assert_response_shape(kind: Trigger, event: dict[str, Any], response: Any, named: int) -> None:
    if kind is Trigger.SQS:
        assert response == {"batchItemFailures": []}
    elif kind is Trigger.BATCH_OPERATIONS:
        assert response["invocationSchemaVersion"] == event["invocationSchemaVersion"]
        assert response["invocationId"] == event["invocationId"]
        assert response["treatMissingKeysAs"] == "TemporaryFailure"
        assert [r["taskId"] for r in response["results"]] == [t["taskId"] for t in event["tasks"]]
        assert {r["resultCode"] for r in response["results"]} == {"Succeeded"}
        assert all(r["resultString"].startswith("rotated:") for r in response["results"])
    else:
        assert response["rotated"] == named and response["failed"] == 0
        if kind is Trigger.ROTATE_REQUEST:
            assert [o["status"] for o in response["objects"]] == ["rotated"] * named


def test_s3_test_event_is_acknowledged_and_touches_nothing(seeded: Seeded) -> None:
    before = seeded.etags()
    response = rotate(seeded.materialize(load_event("s3-test-event.json")), LambdaContext())
    assert response == {"batchItemFailures": []}
    assert seeded.etags() == before


def test_second_delivery_of_the_same_event_writes_nothing(seeded: Seeded) -> None:
    event = seeded.materialize(load_event("sqs-rotate-request.json"))
    rotate(event, LambdaContext())
    after_first = seeded.etags()
    assert rotate(event, LambdaContext()) == {"batchItemFailures": []}
    assert seeded.etags() == after_first


def _sqs_batch(*bodies: Any) -> dict[str, Any]:
    template = load_event("sqs-mixed.json")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = dict(template, messageId=f"msg-{index}", body=body if isinstance(body, str) else json.dumps(body))
        records.append(record)
    return {"Records": records}


def test_mixed_sqs_batch_returns_only_retryable_failures_and_parks_permanent_ones(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a good object, one on a key whose KMS calls keep failing with 503, one with a broken token
    monkeypatch.setenv("NCP_KMS_MAX_ATTEMPTS", "2")
    stack = seeded.stack
    s3 = stack.client("s3")
    flaky_tag = stack.kms.create_key()
    (flaky_token,) = get_runtime().kms.encrypt(flaky_tag, [b"flaky"])
    s3.put_object(
        Bucket=stack.bucket, Key="flaky.txt", Body=flaky_token.encode(), Metadata={"ncpkms-key-tag": flaky_tag}
    )
    s3.put_object(Bucket=stack.bucket, Key="broken.txt", Body=b"ncpkms:v1:@@@@")
    stack.kms.rotate(flaky_tag)
    stack.kms.inject("server-error", times=100, key_tag=flaky_tag, status=503)
    broken_request = {"bucket": stack.bucket, "keys": ["broken.txt"]}
    event = _sqs_batch(
        s3_notification(stack.bucket, ["secrets/api-token.txt"]),
        {"Type": "Notification", "Message": json.dumps(s3_notification(stack.bucket, ["flaky.txt"]))},
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.bucket},
        broken_request,
        "this is not json",
    )

    # When
    response = rotate(event, LambdaContext())

    # Then only the retryable message comes back; the permanent ones are parked in the DLQ with a reason
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert token_version(seeded.tokens("secrets/api-token.txt")[0]) == 2
    assert s3.get_object(Bucket=stack.bucket, Key="flaky.txt")["Body"].read() == flaky_token.encode()
    parked = stack.client("sqs").receive_message(
        QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = {m["Body"]: m["MessageAttributes"]["rewrap-failure"]["StringValue"] for m in parked}
    assert "this is not json" in reasons and reasons["this is not json"].startswith("unsupported-event")
    (request_body,) = set(reasons) - {"this is not json"}
    parked_request = json.loads(request_body)
    assert (parked_request["bucket"], parked_request["keys"]) == (stack.bucket, ["broken.txt"])
    assert reasons[request_body].startswith("malformed-token")
    assert parked_request["failures"][0]["reason"].startswith("malformed-token")


def test_a_rotate_request_parks_only_its_failed_keys(seeded: Seeded) -> None:
    # Given one rotate request: an archived object, a malformed token and two good objects
    stack = seeded.stack
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="broken.txt", Body=b"ncpkms:v1:@@@@")
    (cold,) = get_runtime().kms.encrypt(stack.key_tag, [b"cold"])
    s3.put_object(Bucket=stack.bucket, Key="cold.txt", Body=cold.encode(), StorageClass="GLACIER")
    request = {"bucket": stack.bucket, "keys": ["secrets/api-token.txt", "cold.txt", "broken.txt", "docs/config.json"]}

    # When it arrives through SQS
    response = rotate(_sqs_batch(request), LambdaContext())

    # Then the message is acknowledged, the good objects are rotated, the archived one is reported
    # (not failed), and the dead-letter queue holds only the malformed key with its reason
    assert response == {"batchItemFailures": []}
    assert token_version(seeded.tokens("secrets/api-token.txt")[0]) == 2
    assert {token_version(t) for t in seeded.tokens("docs/config.json")} == {2}
    parked = stack.client("sqs").receive_message(QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10)
    (message,) = parked["Messages"]
    body = json.loads(message["Body"])
    assert body["keys"] == ["broken.txt"]
    assert [f["key"] for f in body["failures"]] == ["broken.txt"]
    assert body["failures"][0]["reason"].startswith("malformed-token")
    assert parse(body).refs[0].key == "broken.txt"  # a redrive replays just that key


def test_batch_operations_result_codes_per_failure_class(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCP_KMS_MAX_ATTEMPTS", "1")
    stack = seeded.stack
    kms = get_runtime().kms
    s3 = stack.client("s3")
    disabled_tag, throttled_tag = stack.kms.create_key(), stack.kms.create_key()
    for key, tag in (("disabled.txt", disabled_tag), ("throttled.txt", throttled_tag)):
        (token,) = kms.encrypt(tag, [b"x"])
        s3.put_object(Bucket=stack.bucket, Key=key, Body=token.encode(), Metadata={"ncpkms-key-tag": tag})
        stack.kms.rotate(tag)
    stack.kms.disable_version(disabled_tag, 1)
    stack.kms.inject("throttle", times=100, key_tag=throttled_tag)
    event = load_event("batch-ops-2.0.json")
    task = event["tasks"][0]
    cases = {
        "ok": (stack.bucket, "secrets/api-token.txt"),
        "refused-bucket": ("not-our-bucket", "x.txt"),
        "disabled-version": (stack.bucket, "disabled.txt"),
        "throttled": (stack.bucket, "throttled.txt"),
        "missing": (stack.bucket, "no/such key.txt"),
    }
    event["tasks"] = [
        dict(task, taskId=name, s3Bucket=bucket, s3Key=key.replace(" ", "+"), s3VersionId=None)
        for name, (bucket, key) in cases.items()
    ]

    response = rotate(event, LambdaContext())

    codes = {r["taskId"]: (r["resultCode"], r["resultString"]) for r in response["results"]}
    assert codes["ok"][0] == "Succeeded" and codes["ok"][1].startswith("rotated: 1/1 tokens v1 -> v2")
    assert codes["refused-bucket"] == (
        "PermanentFailure",
        "bucket-not-allowed: bucket 'not-our-bucket' is not in REWRAP_BUCKETS",
    )
    assert codes["disabled-version"][0] == "PermanentFailure"
    assert codes["disabled-version"][1].startswith("version-disabled: re-enable v1 to rotate it")
    assert codes["throttled"][0] == "TemporaryFailure" and "kms-throttled" in codes["throttled"][1]
    assert codes["missing"] == ("Succeeded", "missing")
    assert all(len(r["resultString"]) <= 900 for r in response["results"])


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"hello": "world"},
        {"Records": []},
        {"Records": [{"eventSource": "aws:kinesis"}]},
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        {"bucket": "b", "keys": []},
        {"bucket": "b", "keys": ["k"] * 1001},
        {"bucket": "b", "keys": ["k"], "dryRun": "yes"},
        {"invocationSchemaVersion": "3.0", "tasks": []},
    ],
)
def test_unrecognised_or_malformed_events_raise_a_clear_error(handler_env: LocalStack, event: Any) -> None:
    with pytest.raises(UnsupportedEventError) as caught:
        rotate(event, LambdaContext())
    assert caught.value.code == "unsupported-event"
    assert "Contents" not in handler_env.client("s3").list_objects_v2(Bucket=handler_env.bucket)


def test_malformed_units_fail_alone(seeded: Seeded) -> None:
    batch = load_event("batch-ops-1.0.json")
    batch = seeded.materialize(batch)
    batch["tasks"].append({"taskId": "broken-task", "s3BucketArn": "arn:aws:s3:::x"})
    response = rotate(batch, LambdaContext())
    by_task = {r["taskId"]: r["resultCode"] for r in response["results"]}
    assert by_task.pop("broken-task") == "PermanentFailure"
    assert set(by_task.values()) == {"Succeeded"}


def test_direct_rotate_request_dry_run(seeded: Seeded) -> None:
    before = seeded.etags()
    event = seeded.materialize(load_event("rotate-request.json"))
    event["dryRun"] = True
    response = rotate(event, LambdaContext())
    assert response["would-rotate"] == 5 and response["rotated"] == 0
    assert seeded.etags() == before


def test_opaque_and_unreadable_objects_are_reported_not_retried_nor_parked(seeded: Seeded) -> None:
    stack = seeded.stack
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="bundle.zip", Body=b"PK\x03\x04" + b"\x00" * 26)
    (token,) = get_runtime().kms.encrypt(stack.key_tag, [b"cold"])
    s3.put_object(Bucket=stack.bucket, Key="cold.txt", Body=token.encode(), StorageClass="GLACIER")

    # SQS: both acknowledged (not retried, not parked in the DLQ)
    event = _sqs_batch(s3_notification(stack.bucket, ["bundle.zip"]), s3_notification(stack.bucket, ["cold.txt"]))
    assert rotate(event, LambdaContext()) == {"batchItemFailures": []}
    dead = stack.client("sqs").receive_message(QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10)
    assert dead.get("Messages", []) == []

    # S3 Batch Operations: listed in the job's failure report with the reason, never retried
    batch = load_event("batch-ops-2.0.json")
    task = batch["tasks"][0]
    batch["tasks"] = [
        dict(task, taskId=key, s3Bucket=stack.bucket, s3Key=key, s3VersionId=None) for key in ("bundle.zip", "cold.txt")
    ]
    codes = {r["taskId"]: (r["resultCode"], r["resultString"]) for r in rotate(batch, LambdaContext())["results"]}
    assert codes["bundle.zip"] == ("PermanentFailure", "opaque: zip archive")
    assert codes["cold.txt"] == ("PermanentFailure", "unreadable: archived")

    # a direct request: counted per status in the summary
    summary = rotate({"bucket": stack.bucket, "keys": ["bundle.zip", "cold.txt"]}, LambdaContext())
    assert (summary["opaque"], summary["unreadable"], summary["failed"], summary["permanent"]) == (1, 1, 0, 0)


def test_an_eventbridge_key_that_only_exists_as_sent_is_rotated_as_sent(seeded: Seeded) -> None:
    # Given an object whose name holds a literal "%20", and an EventBridge event naming it as is
    stack = seeded.stack
    (token,) = get_runtime().kms.encrypt(stack.key_tag, [b"literal"])
    stack.kms.rotate(stack.key_tag)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="odd%20name.txt", Body=token.encode())
    event = json.loads(json.dumps(load_event("eventbridge-s3.json")).replace("rewrap-demo-bucket", stack.bucket))
    event["detail"]["object"]["key"] = "odd%20name.txt"

    # When
    summary = rotate(event, LambdaContext())

    # Then "odd name.txt" does not exist, so the key as sent was rotated
    assert summary["rotated"] == 1 and summary["missing"] == 0
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key="odd%20name.txt")["Body"].read()
    assert token_version(body.decode()) == 3


# Powertools' own sample SNS event (its tests/events/snsEvent.json): what a topic that is not S3's delivers.
FOREIGN_SNS_EVENT = {
    "Records": [
        {
            "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-2:123456789012:sns-la ...",
            "EventSource": "aws:sns",
            "Sns": {
                "SignatureVersion": "1",
                "Timestamp": "2019-01-02T12:45:07.000Z",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "Message": "Hello from SNS!",
                "MessageAttributes": {"Test": {"Type": "String", "Value": "TestString"}},
                "Type": "Notification",
                "TopicArn": "arn:aws:sns:us-east-2:123456789012:sns-lambda",
                "Subject": "TestInvoke",
            },
        }
    ]
}


def sns_records(*messages: str) -> dict[str, Any]:
    """A direct SNS invocation with one record per message, as a topic subscription delivers them."""
    return {
        "Records": [
            {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {"MessageId": f"m-{i}", "Message": message}}
            for i, message in enumerate(messages)
        ]
    }


def test_a_foreign_message_on_the_direct_sns_route_is_refused_with_its_reason(seeded: Seeded) -> None:
    """The invocation fails, so Lambda's failure destination (the dead-letter queue) keeps the event, as the SQS
    route parks the same message; answering it with nothing done would forget it."""
    before = seeded.etags()
    with service_log() as records, pytest.raises(UnsupportedEventError) as caught:
        rotate(FOREIGN_SNS_EVENT, LambdaContext())
    assert caught.value.code == "unsupported-event"
    assert "95df01b4-ee98-5cb9-9903-4c221d41eb5e: unsupported-event: SNS notification Message is not JSON" in str(
        caught.value
    )
    (logged,) = [r for r in records if r.getMessage() == "unsupported records in an asynchronous event"]
    assert logged.levelname == "ERROR" and "Message is not JSON" in logged.reasons  # type: ignore[attr-defined]
    assert seeded.etags() == before


def test_the_direct_sns_route_refuses_the_foreign_record_after_rotating_the_others(seeded: Seeded) -> None:
    """A retry of the whole event finds the S3 notification's object current; S3's test event is no refusal."""
    stack = seeded.stack
    notification = json.dumps(s3_notification(stack.bucket, ["secrets/api-token.txt"]))
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.bucket})

    assert rotate(sns_records(test_event), LambdaContext())["total"] == 0
    with pytest.raises(UnsupportedEventError, match=r"1 record\(s\) are not S3 events \(m-2: "):
        rotate(sns_records(notification, test_event, json.dumps({"greeting": "hello"})), LambdaContext())
    assert token_version(seeded.tokens("secrets/api-token.txt")[0]) == 2
