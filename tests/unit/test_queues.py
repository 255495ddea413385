"""The SQS adapter: what the rotate queue refuses is retried once and every failure there is a QueueError; a
forward to the dead-letter queue fails retryable or permanent, and always fits the queue's message size."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from rewrap.adapters.sqs import DeadLetters, QueueError, RotateQueue
from rewrap.core.ports import QUEUE_MESSAGE_BYTES
from rewrap.errors import RetryableError, RewrapError

URL = "https://sqs.ap-northeast-2.amazonaws.com/123456789012/rewrap-rotate"


@pytest.fixture
def sqs() -> Stubber:
    client = boto3.session.Session(region_name="ap-northeast-2").client(
        "sqs", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return Stubber(client)


def refused(*ids: str) -> dict[str, object]:
    return {
        "Successful": [],
        "Failed": [{"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "try again"} for i in ids],
    }


def test_refused_entries_are_sent_again_once(sqs: Stubber) -> None:
    sqs.add_response("send_message_batch", refused("1"), {"QueueUrl": URL, "Entries": ANY})
    retried = {"QueueUrl": URL, "Entries": [{"Id": "1", "MessageBody": json.dumps({"bucket": "b", "keys": ["k2"]})}]}
    sqs.add_response("send_message_batch", {"Successful": [], "Failed": []}, retried)
    with sqs:
        assert RotateQueue(sqs.client, URL).send_requests("b", ["k1", "k2"], 1) == (2, 2)
    sqs.assert_no_pending_responses()


def test_refused_twice_is_a_retryable_queue_error(sqs: Stubber) -> None:
    sqs.add_response("send_message_batch", refused("0"))
    sqs.add_response("send_message_batch", refused("0"))
    with sqs, pytest.raises(QueueError, match="refused 1 rotate requests twice"):
        RotateQueue(sqs.client, URL).send_requests("b", ["k1"], 10)


def test_a_failing_retry_call_is_a_queue_error_not_a_raw_client_error(sqs: Stubber) -> None:
    sqs.add_response("send_message_batch", refused("0"))
    sqs.add_client_error("send_message_batch", service_error_code="ServiceUnavailable", http_status_code=503)
    with sqs, pytest.raises(QueueError) as caught:
        RotateQueue(sqs.client, URL).send_requests("b", ["k1"], 10)
    assert isinstance(caught.value, RetryableError)


DLQ = "https://sqs.ap-northeast-2.amazonaws.com/123456789012/rewrap-rotate-dlq"


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("RequestThrottled", 400, True),
        ("ServiceUnavailable", 503, True),
        ("InvalidParameterValue", 400, False),  # e.g. a message over the queue's MaximumMessageSize
        ("AWS.SimpleQueueService.NonExistentQueue", 400, False),
        ("AccessDenied", 403, False),
    ],
)
def test_a_refused_forward_is_classified(sqs: Stubber, code: str, status: int, retryable: bool) -> None:
    sqs.add_client_error("send_message", service_error_code=code, http_status_code=status)
    with sqs, pytest.raises(RewrapError) as caught:
        DeadLetters(sqs.client, DLQ).forward("{}", "malformed-token: bad", "m-1")
    assert caught.value.retryable is retryable
    assert caught.value.code == ("sqs-unavailable" if retryable else "sqs-refused")
    assert code in str(caught.value)


def test_attributes_shrink_to_the_room_the_body_leaves(sqs: Stubber) -> None:
    reason = "unsupported-event: " + "r" * 200
    body = "b" * (QUEUE_MESSAGE_BYTES - len("rewrap-failure") - len("String") - 40)
    sent = {
        "QueueUrl": DLQ,
        "MessageBody": body,
        "MessageAttributes": {"rewrap-failure": {"DataType": "String", "StringValue": reason[:40]}},
    }
    sqs.add_response("send_message", {"MessageId": "x", "MD5OfMessageBody": "x"}, sent)
    with sqs:
        DeadLetters(sqs.client, DLQ).forward(body, reason, "m-1")
    sqs.assert_no_pending_responses()
