"""Parking a permanently failed rotate request always fits the dead-letter queue, on moto and on LocalStack:
SQS refuses a message over 256 KiB (its attributes count), so a large request's reasons are summarised and,
when its keys alone do not fit, it is parked in parts, every key kept for a redrive."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from rewrap.core.events import parse
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3
SQS_LIMIT = 256 * 1024


def request_of(size: int, count: int) -> dict[str, Any]:
    """A rotate request for a bucket this deployment may not touch: ``count`` keys, about ``size`` bytes."""
    overhead = len(json.dumps({"bucket": "not-an-allowed-bucket", "keys": []}))
    length = (size - overhead) // count - 4  # quotes and separator
    keys = [f"tenant/{i:06d}/" + "k" * (length - 14) for i in range(count)]
    for i in range(size - len(json.dumps({"bucket": "not-an-allowed-bucket", "keys": keys}))):
        keys[i % count] += "k"
    return {"bucket": "not-an-allowed-bucket", "keys": keys}


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


@pytest.mark.parametrize(
    ("size", "count", "reason"),
    [
        (191_000, 1_000, "bucket-not-allowed"),  # each key refused: the reasons key by key would double the body
        (SQS_LIMIT - 600, 10_000, "unsupported-event: rotate request: at most 1000 keys"),  # refused as a whole
    ],
    ids=["191KB", "256KiB"],
)
def test_a_large_failed_request_is_parked_whole_within_the_queue_limit(
    handler_env: LocalStack, size: int, count: int, reason: str
) -> None:
    request = request_of(size, count)
    body = json.dumps(request)
    assert len(body) == size
    record = dict(load_event("sqs-mixed.json")["Records"][0], messageId="big-1", body=body)

    response = rotate({"Records": [record]}, LambdaContext())

    # Parked, not left to SQS's blind redrive: the batch reports no failure
    assert response == {"batchItemFailures": []}
    messages = parked_messages(handler_env)
    assert messages
    parked_keys: list[str] = []
    for message in messages:
        attributes = message["MessageAttributes"]
        assert len(message["Body"].encode()) + sum(len(str(a)) for a in attributes.values()) < SQS_LIMIT
        assert attributes["rewrap-failure"]["StringValue"].startswith(reason)
        parked = json.loads(message["Body"])
        (failure, *_) = parked["failures"]
        assert failure["reason"].startswith(reason)
        parked_keys += [ref.key for ref in parse(parked).refs]  # each part is a rotate request a redrive replays
    assert sorted(parked_keys) == sorted(request["keys"])
