"""Notifier on SNS: a run's verdict, published once to the stack's alarm topic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.errors import PermanentError, RetryableError

# SNS limits: a subject of at most 100 printable ASCII characters, a message of at most 256 KiB.
SUBJECT_LIMIT, MESSAGE_LIMIT = 100, 200_000


class TopicNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self.client = client
        self.topic_arn = topic_arn

    def notify(self, subject: str, message: str, attributes: Mapping[str, str]) -> None:
        printable = "".join(c if " " <= c <= "~" else "?" for c in subject)[:SUBJECT_LIMIT]
        try:
            self.client.publish(
                TopicArn=self.topic_arn,
                Subject=printable,
                Message=message[:MESSAGE_LIMIT],
                MessageAttributes={name: {"DataType": "String", "StringValue": v} for name, v in attributes.items()},
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status >= 500 or code in ("Throttling", "ThrottlingException", "InternalError"):
                raise RetryableError(f"SNS publish failed ({code})") from exc
            raise PermanentError(f"SNS publish refused ({code})", code="sns-refused") from exc
        except BotoCoreError as exc:
            raise RetryableError(f"SNS publish failed ({type(exc).__name__})") from exc
