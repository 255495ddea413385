"""Parking a permanently failed rotate request always fits the dead-letter queue, on moto and on LocalStack:
SQS refuses a message over the queue's MaximumMessageSize (the template sets 256 KiB; its attributes count), so
a large request's reasons are summarised and, when its keys alone do not fit, it is parked in parts, every key
kept for a redrive. A forward the queue refuses anyway is logged, classified and counted, never swallowed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from rewrap.app.runtime import reset_runtime
from rewrap.core.events import parse
from rewrap.core.ports import QUEUE_MESSAGE_BYTES
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event
from rewrap_local.stack import LocalStack
from tests.observed import emitted_metrics, service_log

pytestmark = pytest.mark.s3
REFUSED_BUCKET = "not-an-allowed-bucket"


def request_of(size: int, count: int) -> dict[str, Any]:
    """A rotate request for a bucket this deployment may not touch: ``count`` keys, ``size`` bytes of JSON."""
    overhead = len(json.dumps({"bucket": REFUSED_BUCKET, "keys": []}))
    length = (size - overhead) // count - 4  # quotes and separator
    keys = [f"tenant/{i:06d}/" + "k" * (length - 14) for i in range(count)]
    for i in range(size - len(json.dumps({"bucket": REFUSED_BUCKET, "keys": keys}))):
        keys[i % count] += "k"
    return {"bucket": REFUSED_BUCKET, "keys": keys}


def sqs_event(body: str) -> dict[str, Any]:
    return {"Records": [dict(load_event("sqs-mixed.json")["Records"][0], messageId="big-1", body=body)]}


def parked_messages(stack: LocalStack) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        found += batch
        sqs.delete_message_batch(
            QueueUrl=stack.dead_letter_queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return found


def sqs_size(message: dict[str, Any]) -> int:
    """What SQS counts against MaximumMessageSize: the body, and each attribute's name, type and value."""
    attributes = message.get("MessageAttributes", {})
    return len(message["Body"].encode()) + sum(
        len(name) + len(a["DataType"]) + len(a["StringValue"].encode()) for name, a in attributes.items()
    )


def test_the_local_queues_hold_what_the_template_allows(handler_env: LocalStack) -> None:
    """The tests below mean something only if the backends refuse what SQS refuses (both default to 1 MiB)."""
    sqs = handler_env.client("sqs")
    for url in (handler_env.queue_url, handler_env.dead_letter_queue_url):
        size = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
        assert size["MaximumMessageSize"] == str(QUEUE_MESSAGE_BYTES)
    with pytest.raises(sqs.exceptions.ClientError):
        sqs.send_message(QueueUrl=handler_env.dead_letter_queue_url, MessageBody="x" * (QUEUE_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    ("size", "count", "reason"),
    [
        (191_000, 1_000, "bucket-not-allowed"),  # each key refused: the reasons key by key would double the body
        (QUEUE_MESSAGE_BYTES - 600, 10_000, "unsupported-event: rotate request: at most 1000 keys"),  # refused whole
    ],
    ids=["191KB", "256KiB"],
)
def test_a_large_failed_request_is_parked_whole_within_the_queue_limit(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], size: int, count: int, reason: str
) -> None:
    request = request_of(size, count)
    body = json.dumps(request)
    assert len(body) == size

    response = rotate(sqs_event(body), LambdaContext())

    # Parked, not left to SQS's blind redrive: the batch reports no failure, and nothing failed to park
    assert response == {"batchItemFailures": []}
    assert "ParkingFailures" not in emitted_metrics(capsys.readouterr().out)
    messages = parked_messages(handler_env)
    assert messages
    parked_keys: list[str] = []
    for message in messages:
        assert sqs_size(message) <= QUEUE_MESSAGE_BYTES
        attributes = message["MessageAttributes"]
        assert attributes["rewrap-failure"]["StringValue"].startswith(reason)
        assert attributes["rewrap-source-message-id"]["StringValue"] == "big-1"
        parked = json.loads(message["Body"])
        failure, *_ = parked["failures"]
        assert failure["reason"].startswith(reason)
        parked_keys += [ref.key for ref in parse(parked).refs]  # each part is a rotate request a redrive replays
    assert sorted(parked_keys) == sorted(request["keys"])


def test_a_message_at_the_queue_limit_is_parked_as_it_came(handler_env: LocalStack) -> None:
    """A body that is no rotate request is parked unchanged; the reason goes along as far as room is left
    (LocalStack, like SQS, counts the attributes; moto counts only the body)."""
    body = json.dumps({"unknown": "x" * (QUEUE_MESSAGE_BYTES - 80)})
    assert len(body) < QUEUE_MESSAGE_BYTES

    assert rotate(sqs_event(body), LambdaContext()) == {"batchItemFailures": []}

    (message,) = parked_messages(handler_env)
    assert message["Body"] == body and sqs_size(message) <= QUEUE_MESSAGE_BYTES
    assert message["MessageAttributes"]["rewrap-failure"]["StringValue"].startswith("unsupported-event")


def test_a_forward_the_queue_refuses_is_logged_classified_counted_and_left_on_the_queue(
    handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a dead-letter queue that holds less than what is parked (a real refusal from the backend)
    sqs = handler_env.client("sqs")
    small = sqs.create_queue(QueueName=f"{handler_env.bucket}-small-dlq", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    monkeypatch.setenv("REWRAP_DEAD_LETTER_QUEUE_URL", small)
    reset_runtime()
    capsys.readouterr()

    # When a permanently failed request is parked there
    with service_log() as records:
        response = rotate(sqs_event(json.dumps(request_of(4_000, 20))), LambdaContext())

    # Then the message stays on its queue, and the refusal is logged with its class and counted
    assert response == {"batchItemFailures": [{"itemIdentifier": "big-1"}]}
    (record,) = [r for r in records if r.getMessage() == "message not parked"]
    assert record.levelname == "ERROR"
    assert record.errorClass == "permanent"  # type: ignore[attr-defined]
    assert record.reason.startswith("sqs-refused: the dead-letter queue refused the message")  # type: ignore[attr-defined]
    assert record.parkedFor.startswith("bucket-not-allowed")  # type: ignore[attr-defined]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["ParkingFailures"] == 1.0 and "MessagesParked" not in metrics


def test_summarised_reasons_reference_the_report_that_holds_each_keys_own(
    handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWRAP_REPORT_PREFIX", f"s3://{handler_env.bucket}/audit/")
    reset_runtime()
    request = request_of(191_000, 1_000)

    assert rotate(sqs_event(json.dumps(request)), LambdaContext()) == {"batchItemFailures": []}

    parts = [json.loads(message["Body"]) for message in parked_messages(handler_env)]
    assert sum(f["keys"] for part in parts for f in part["failures"]) == 1_000  # one reason, counted per part
    (report,) = {part["report"] for part in parts}
    bucket, _, key = report.removeprefix("s3://").partition("/")
    lines = handler_env.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    reasons = {record["key"]: record["reason"] for record in map(json.loads, lines)}
    assert sorted(reasons) == sorted(request["keys"])
    assert all(reason.startswith("bucket-not-allowed") for reason in reasons.values())
