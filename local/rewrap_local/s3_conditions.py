"""S3's conditional-copy rules, enforced by a botocore hook where an emulator ignores them.

moto ignores a copy's destination ``If-Match``, CompleteMultipartUpload's ``If-Match`` and the copy-source
conditions ``x-amz-copy-source-if-match`` / ``-if-unmodified-since``; LocalStack enforces them on CopyObject
but not ``-if-unmodified-since`` on UploadPartCopy. The hook answers as S3 documents, including the
combination rule: when the source's if-match holds and its if-unmodified-since fails, S3 copies anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

SOURCE_OPS = frozenset({"CopyObject", "UploadPartCopy"})
DESTINATION_OPS = frozenset({"CopyObject", "CompleteMultipartUpload"})


def header(request: Any, name: str) -> str | None:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def bucket_key(url: str) -> tuple[str, str]:
    """(bucket, key) of a path-style URL (what botocore uses for a loopback endpoint)."""
    bucket, _, key = urlsplit(url).path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def _etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


class CopyConditions:
    """Answers a request whose S3 condition fails with S3's error (``refusal``); None lets it through.
    ``s3`` is a separate client (no hook) that reads the current object; ``source_time_only`` applies
    only UploadPartCopy's if-unmodified-since (what LocalStack leaves out)."""

    def __init__(
        self, s3: Any, error: Callable[[str, int, str], AWSResponse], *, source_time_only: bool = False
    ) -> None:
        self.s3 = s3
        self.error = error
        self.source_time_only = source_time_only

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.s3", self._before_send, unique_id="rewrap-copy-conditions")

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        return self.refusal(event_name.rsplit(".", 1)[-1], request)

    def refusal(self, op: str, request: Any) -> AWSResponse | None:
        if self.source_time_only:
            return self._source(request) if op == "UploadPartCopy" else None
        if op in DESTINATION_OPS and header(request, "If-Match"):
            bucket, key = bucket_key(request.url)
            current = self._head(request.url, bucket, key, None)
            if isinstance(current, AWSResponse):
                return current
            if _etag(current["ETag"]) != _etag(header(request, "If-Match")):
                return self.error(request.url, 412, "PreconditionFailed")
        return self._source(request) if op in SOURCE_OPS else None

    def _source(self, request: Any) -> AWSResponse | None:
        match = header(request, "x-amz-copy-source-if-match")
        since = header(request, "x-amz-copy-source-if-unmodified-since")
        if not (match or since):
            return None
        source, _, version_id = unquote(header(request, "x-amz-copy-source") or "").partition("?versionId=")
        bucket, _, key = source.lstrip("/").partition("/")
        current = self._head(request.url, bucket, key, version_id or None)
        if isinstance(current, AWSResponse):
            return current
        if match is not None:  # S3's rule: a holding if-match copies, whatever if-unmodified-since says
            holds = _etag(current["ETag"]) == _etag(match)
        else:
            holds = _modified(current) <= parsedate_to_datetime(str(since))
        return None if holds else self.error(request.url, 412, "PreconditionFailed")

    def _head(self, url: str, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | AWSResponse:
        where = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            return dict(self.s3.head_object(**where))
        except ClientError:
            return self.error(url, 404, "NoSuchKey")


def _modified(head: dict[str, Any]) -> datetime:
    """LastModified in whole seconds, as S3 keeps it and as the HTTP date in the condition says it."""
    return head["LastModified"].replace(microsecond=0)
