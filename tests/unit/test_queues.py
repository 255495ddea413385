"""The rotate queue adapter: what SQS refuses is retried once, and every SQS failure is a QueueError."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from rewrap.adapters.sqs import QueueError, RotateQueue
from rewrap.errors import RetryableError

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
