"""Delivery to the rotate handler: SQS messages of every shape and S3 Batch Operations tasks."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote_plus

from rewrap_local.payloads import drain_queue, load_event, s3_notification


class Delivery:
    """Mixed into ``Soak`` (which holds the stack, the queue client, the report and ``invoke``)."""

    def deliver_sqs(self, keys: list[str]) -> None:
        bodies = []
        position = 0
        while position < len(keys):
            shape = self.rng.choice(("s3", "sns", "eventbridge", "request"))
            count = 1 if shape == "eventbridge" else self.rng.randint(1, 4)
            bodies.append(self._message(shape, keys[position : position + count]))
            position += count
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
            self.sqs.send_message_batch(QueueUrl=self.stack.queue_url, Entries=entries)
        self.report.invocations["messages sent"] += len(bodies)
        self.drain()

    def drain(self) -> None:
        counts = drain_queue(self.sqs, self.stack.queue_url, self._sqs_handler, max_rounds=500)
        self.report.retries["sqs redeliveries"] += counts["failed"]

    def _message(self, shape: str, keys: list[str]) -> str:
        bucket = self.stack.bucket
        if shape == "s3":
            return json.dumps(s3_notification(bucket, keys))
        if shape == "sns":
            return json.dumps(
                {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": "arn:aws:sns:ap-northeast-2:123456789012:rewrap-s3-events",
                    "Subject": "Amazon S3 Notification",
                    "Message": json.dumps(s3_notification(bucket, keys)),
                }
            )
        if shape == "eventbridge":
            event = load_event("eventbridge-s3.json")
            event["id"] = str(uuid.uuid4())
            event["detail"]["bucket"]["name"] = bucket
            event["detail"]["object"]["key"] = keys[0]
            return json.dumps(event)
        return json.dumps({"bucket": bucket, "keys": keys})

    def _sqs_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = self.invoke(event, "sqs")
        if response is None:  # a crashed invocation: Lambda returns the whole batch to the queue
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}
        return response

    def deliver_batch_operations(self, keys: list[str], attempts: int = 3) -> None:
        """Tasks in invocations of a few; TemporaryFailure is retried (as S3 Batch Operations does),
        what still fails is kept for a job on the completion report's failed tasks."""
        size = self.config.tasks_per_invocation
        for start in range(0, len(keys), size):
            todo = keys[start : start + size]
            for attempt in range(attempts):
                todo = self.invoke_tasks(todo)
                if not todo:
                    break
                if attempt + 1 < attempts:
                    self.report.retries["batch-ops task retries"] += len(todo)
            self._failed_tasks.extend(todo)

    def invoke_tasks(self, keys: list[str]) -> list[str]:
        """Run one invocation; the keys of tasks to retry (TemporaryFailure, or all when it crashed).
        PermanentFailure tasks are kept for a re-run once the cause is fixed (``converge``)."""
        event = load_event("batch-ops-2.0.json")
        event["invocationId"] = str(uuid.uuid4())
        template = event["tasks"][0]
        by_task = {}
        event["tasks"] = []
        for key in keys:
            self._tasks += 1
            task_id = f"task-{self._tasks}"
            by_task[task_id] = key
            event["tasks"].append(
                dict(template, taskId=task_id, s3Bucket=self.stack.bucket, s3Key=quote_plus(key, safe="/"))
                | {"s3VersionId": None}
            )
        response = self.invoke(event, "batch-ops")
        if response is None:
            return keys
        retry = []
        for result in response["results"]:
            if result["resultCode"] == "Succeeded":
                continue
            key, code = by_task[result["taskId"]], result["resultString"].split(":", 1)[0]
            self.report.failures[f"{result['resultCode']} {code}"] += 1
            self.report.failure_examples.setdefault(code, result["resultString"])
            (retry if result["resultCode"] == "TemporaryFailure" else self._failed_tasks).append(key)
        return retry
