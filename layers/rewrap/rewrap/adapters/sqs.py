"""SQS adapter: rotate requests to the rotate queue, and permanent failures to the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.core.ports import MESSAGE_LIMIT_BYTES, QUEUE_MESSAGE_BYTES
from rewrap.errors import PermanentError, RewrapError, StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageBatchRequestEntryTypeDef

SEND_BATCH_LIMIT = 10  # entries per SendMessageBatch
# SQS refusals that may pass on a later attempt; any other 4xx (a message too large, a queue that does not
# exist, access denied) fails the same way every time.
RETRYABLE_CODES = frozenset(
    {"RequestThrottled", "ThrottlingException", "Throttling", "OverLimit", "KmsThrottled", "ServiceUnavailable"}
)
DATA_TYPE = "String"  # of each attribute rewrap sets


class QueueError(StorageUnavailableError):
    code = "sqs-unavailable"


class QueueRefusedError(PermanentError):
    """SQS refused the request for a reason a retry does not change."""

    code = "sqs-refused"


class RotateQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def send_requests(
        self,
        bucket: str,
        keys: Sequence[str],
        keys_per_message: int,
        extra: Mapping[str, Any] | None = None,
        chunks: list[list[str]] | None = None,
    ) -> tuple[int, int]:
        """Send ``keys`` as rotate requests, many keys per message; returns (messages, API calls).
        ``chunks``, when given, receives the keys of each message."""
        bodies = list(_request_bodies(bucket, keys, keys_per_message, dict(extra or {}), chunks))
        calls = 0
        for start in range(0, len(bodies), SEND_BATCH_LIMIT):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + SEND_BATCH_LIMIT])
            ]
            calls += 1
            failed = self._send_batch(entries)
            if failed:  # retry once what SQS refused, then give up loudly
                calls += 1
                if self._send_batch(failed):
                    raise QueueError(f"SQS refused {len(failed)} rotate requests twice")
        return len(bodies), calls

    def _send_batch(
        self, entries: list[SendMessageBatchRequestEntryTypeDef]
    ) -> list[SendMessageBatchRequestEntryTypeDef]:
        """The entries SQS refused; a failed call itself is a retryable ``QueueError``."""
        try:
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"SendMessageBatch failed ({type(exc).__name__})") from exc
        by_id = {entry["Id"]: entry for entry in entries}
        return [by_id[failure["Id"]] for failure in response.get("Failed", [])]


def _request_bodies(
    bucket: str, keys: Sequence[str], keys_per_message: int, extra: dict[str, Any], chunks: list[list[str]] | None
) -> Iterator[str]:
    """Rotate-request bodies holding at most ``keys_per_message`` keys and under SQS's size limit."""
    overhead = len(json.dumps({"bucket": bucket, "keys": [], **extra}))
    chunk: list[str] = []
    size = overhead
    for key in keys:
        key_size = len(json.dumps(key)) + 2  # the key and its ", " separator
        if chunk and (len(chunk) >= keys_per_message or size + key_size > MESSAGE_LIMIT_BYTES):
            if chunks is not None:
                chunks.append(chunk)
            yield json.dumps({"bucket": bucket, "keys": chunk, **extra})
            chunk, size = [], overhead
        chunk.append(key)
        size += key_size
    if chunk:
        if chunks is not None:
            chunks.append(chunk)
        yield json.dumps({"bucket": bucket, "keys": chunk, **extra})


class DeadLetters:
    """Forwards a permanently failed message straight to the dead-letter queue, with the reason,
    so it is neither retried pointlessly nor lost; redrive it once the cause is fixed."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def forward(self, body: str, reason: str, source_message_id: str) -> None:
        """Raises ``QueueError`` (retryable) or ``QueueRefusedError`` (permanent) when SQS does not take it."""
        try:
            self.client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=body,
                MessageAttributes=_attributes_within(
                    body, {"rewrap-failure": reason[:1000], "rewrap-source-message-id": source_message_id or "-"}
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _forward_error(exc) from exc


def _attributes_within(body: str, values: dict[str, str]) -> dict[str, MessageAttributeValueTypeDef]:
    """``values`` as message attributes, shortened, and left out in the end, so that they fit the queue's message
    size with ``body``: SQS counts each attribute's name, type and value along with the body."""
    room = QUEUE_MESSAGE_BYTES - len(body.encode())
    attributes: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in values.items():
        room -= len(name) + len(DATA_TYPE)
        fitting = value.encode()[: max(room, 0)].decode(errors="ignore")
        if not fitting:
            break
        attributes[name] = {"DataType": DATA_TYPE, "StringValue": fitting}
        room -= len(fitting.encode())
    return attributes


def _forward_error(exc: ClientError | BotoCoreError) -> RewrapError:
    """A failed forward, classified: transport failures, 5xx and throttling may pass later, other refusals not."""
    if not isinstance(exc, ClientError):
        return QueueError(f"could not forward to the dead-letter queue ({type(exc).__name__})")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        return QueueError(f"could not forward to the dead-letter queue ({code})")
    message = str(error.get("Message", ""))[:200]
    return QueueRefusedError(f"the dead-letter queue refused the message ({code}: {message})")
