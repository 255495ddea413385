"""Real-shaped trigger payloads built from the samples in ``events/``, and a small stand-in for the
SQS event source mapping (poll → invoke → delete what succeeded), for the demo and the tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from rewrap_local.lambda_context import LambdaContext

_HERE = Path(__file__).resolve().parent
# Installed, the sample events ship inside this package; in the repository they are its events/ folder.
EVENTS_DIR = _HERE / "events" if (_HERE / "events").is_dir() else _HERE.parents[1] / "events"

Handler = Callable[[dict[str, Any], Any], Any]


def load_event(name: str) -> dict[str, Any]:
    """A sample payload from ``events/`` (the one loader of the demo, the soak and the tests)."""
    loaded: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return loaded


def s3_notification(bucket: str, keys: Iterable[str], template: str = "s3-put.json") -> dict[str, Any]:
    """An S3 notification with one ObjectCreated record per key, shaped like ``events/<template>``.

    Keys are URL-encoded form-style as S3 does it (space → ``+``, ``+`` → ``%2B``)."""
    sample = load_event(template)["Records"][0]
    records = []
    for key in keys:
        record = copy.deepcopy(sample)
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        records.append(record)
    return {"Records": records}


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for m in messages
        ]
    }


def drain_queue(sqs: Any, queue_url: str, handler: Handler, *, max_rounds: int = 50) -> dict[str, int]:
    """Deliver the queue's messages to ``handler`` in batches of 10 until it is empty, deleting
    those not reported in ``batchItemFailures`` (and making failed ones visible again)."""
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    counts = {"invocations": 0, "messages": 0, "failed": 0}
    for _ in range(max_rounds):
        received = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=30
        ).get("Messages", [])
        if not received:
            break
        response = handler(sqs_event(received, queue_arn), LambdaContext())
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        counts["invocations"] += 1
        counts["messages"] += len(received)
        counts["failed"] += len(failed)
        for message in received:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return counts
