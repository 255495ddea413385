"""S3 adapter: HEAD, conditional GET, conditional PUT and metadata-replacing self-copy.

Every write is conditional on the ETag that was read (If-Match), so a concurrent writer is never
overwritten and a deleted object is never brought back. A rewrite restates every header S3 would
otherwise reset (content headers, storage class, SSE-KMS settings, tags).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.errors import (
    ObjectChangedError,
    ObjectUnreadableError,
    PermanentError,
    RewrapError,
    StorageDeniedError,
    StorageUnavailableError,
)
from rewrap.ports import MAX_COPY_PART_BYTES, MAX_PARTS, BodyStream, ObjectBody, ObjectHead, ObjectRef

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# HEAD response fields that PutObject / CopyObject accept under the same name.
_RESTATED = (
    "ContentType",
    "ContentEncoding",
    "ContentLanguage",
    "ContentDisposition",
    "CacheControl",
    "Expires",
    "WebsiteRedirectLocation",
    "StorageClass",
    "ServerSideEncryption",
    "SSEKMSKeyId",
    "BucketKeyEnabled",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
)
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_CHANGED = {"412", "PreconditionFailed", "ConditionalRequestConflict", "409"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidObjectState"}
_RETRYABLE = {"500", "503", "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    last_modified: datetime
    version_id: str | None = None  # set by list_versions_page only
    is_latest: bool = True


class S3Store:
    def __init__(self, client: S3Client, *, multipart_copy_threshold: int = MAX_COPY_PART_BYTES) -> None:
        self.client = client
        # CopyObject handles up to 5 GiB; larger envelopes are copied part by part.
        self.multipart_copy_threshold = multipart_copy_threshold

    def list_page(
        self, bucket: str, prefix: str, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[Listed], str | None]:
        """One page of the listing and the token of the next page (None at the end)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if continuation_token:
            params["ContinuationToken"] = continuation_token
        try:
            response = self.client.list_objects_v2(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "LIST") from None
        items = [Listed(o["Key"], int(o.get("Size", 0)), o["LastModified"]) for o in response.get("Contents", [])]
        return items, response.get("NextContinuationToken") if response.get("IsTruncated") else None

    def list_versions_page(
        self, bucket: str, prefix: str, marker: tuple[str, str] | None, max_keys: int = 1000
    ) -> tuple[list[Listed], tuple[str, str] | None]:
        """One page of object versions (current and noncurrent; delete markers left out) and the
        (key marker, version id marker) of the next page (None at the end)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if marker:
            params["KeyMarker"], params["VersionIdMarker"] = marker
        try:
            response = self.client.list_object_versions(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "LIST versions") from None
        items = [
            Listed(v["Key"], int(v.get("Size", 0)), v["LastModified"], v.get("VersionId"), bool(v.get("IsLatest")))
            for v in response.get("Versions", [])
        ]
        if not response.get("IsTruncated"):
            return items, None
        return items, (response.get("NextKeyMarker", ""), response.get("NextVersionIdMarker", ""))

    def head(self, ref: ObjectRef) -> ObjectHead | None:
        try:
            response = self.client.head_object(**_where(ref))
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in _MISSING:
                return None
            if _code(exc) == "400":
                raise ObjectUnreadableError("S3 refused to describe the object (SSE-C: no customer key)") from None
            raise _translate(exc, "HEAD") from None
        return _head_of(response)

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        """One GET for what a HEAD and a GET would tell: the head, and the body if it is at most
        ``limit`` bytes (a larger body is left unread, the connection dropped). None when gone."""
        try:
            response = self.client.get_object(**_where(ref))
            head = _head_of(response)
            if head.size > limit:
                response["Body"].close()
                return head, None
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in _MISSING:
                return None
            raise _translate(exc, "GET") from None
        return head, ObjectBody(data=data, etag=head.etag, tag_count=int(response.get("TagCount") or 0))

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        try:
            response = self.client.get_object(**_where(ref), IfMatch=head.etag)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in _MISSING:
                return None
            raise _translate(exc, "GET") from None
        return ObjectBody(data=data, etag=response["ETag"], tag_count=int(response.get("TagCount") or 0))

    def open_body(self, ref: ObjectRef, head: ObjectHead, chunk_bytes: int = 1024 * 1024) -> BodyStream | None:
        """The body as a stream of chunks (bounded memory), only if it still has ``head.etag``."""
        try:
            response = self.client.get_object(**_where(ref), IfMatch=head.etag)
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in _MISSING:
                return None
            raise _translate(exc, "GET") from None

        def chunks() -> Iterator[bytes]:
            try:
                yield from response["Body"].iter_chunks(chunk_bytes)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, "GET") from None

        return BodyStream(chunks(), int(response.get("TagCount") or 0))

    def start_rewrite(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str], tag_count: int) -> Rewrite:
        """A multipart upload that replaces the object part by part: unchanged byte ranges are copied
        server-side, changed ones uploaded; it completes only if the object still has ``head.etag``."""
        extra = _write_headers(head)
        if tag_count:
            extra["Tagging"] = self._tagging(ref)
        try:
            upload = self.client.create_multipart_upload(
                Bucket=ref.bucket, Key=ref.key, Metadata=dict(metadata), **extra
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "CreateMultipartUpload") from None
        return Rewrite(self.client, ref, head, upload["UploadId"])

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        extra = _write_headers(head)
        if body.tag_count:
            extra["Tagging"] = self._tagging(ref)
        try:
            response = self.client.put_object(
                Bucket=ref.bucket, Key=ref.key, Body=body.data, Metadata=dict(metadata), IfMatch=head.etag, **extra
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "PUT") from None
        return response.get("VersionId")

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        if head.size > self.multipart_copy_threshold:
            return self._replace_metadata_multipart(ref, head, metadata)
        source: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        if head.version_id and head.version_id != "null":
            source["VersionId"] = head.version_id
        try:
            response = self.client.copy_object(
                Bucket=ref.bucket,
                Key=ref.key,
                CopySource=source,  # type: ignore[arg-type]
                CopySourceIfMatch=head.etag,
                IfMatch=head.etag,
                MetadataDirective="REPLACE",
                TaggingDirective="COPY",
                Metadata=dict(metadata),
                **_write_headers(head),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "COPY") from None
        return response.get("VersionId")

    def _replace_metadata_multipart(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        part = max(self.multipart_copy_threshold, -(-head.size // MAX_PARTS))
        rewrite = self.start_rewrite(ref, head, metadata, tag_count=1)
        with rewrite.aborting_on_error():
            for start in range(0, head.size, part):
                rewrite.copy_range(start, min(start + part, head.size))
            return rewrite.complete()

    def bucket_versioning(self, bucket: str) -> str | None:
        """ "Enabled", "Suspended", "" (never enabled), or None when S3 will not say."""
        try:
            return str(self.client.get_bucket_versioning(Bucket=bucket).get("Status", ""))
        except (ClientError, BotoCoreError):
            return None

    def put_new(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Write an object of our own (a report), refusing to overwrite one that exists."""
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "PUT") from None

    def _tagging(self, ref: ObjectRef) -> str:
        try:
            tags = self.client.get_object_tagging(**_where(ref))["TagSet"]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "GET tagging") from None
        return urlencode([(t["Key"], t["Value"]) for t in tags])


class Rewrite:
    """One multipart rewrite of an object, in part order. Abort it on any failure."""

    def __init__(self, client: Any, ref: ObjectRef, head: ObjectHead, upload_id: str) -> None:
        self.client = client
        self.ref = ref
        self.head = head
        self.upload_id = upload_id
        self.parts: list[dict[str, Any]] = []
        self.bytes_uploaded = 0

    def _target(self) -> dict[str, Any]:
        return {"Bucket": self.ref.bucket, "Key": self.ref.key, "UploadId": self.upload_id}

    def copy_range(self, start: int, end: int) -> None:
        """Copy source bytes [start, end) server-side as the next part (no bytes pass through us)."""
        source: dict[str, str] = {"Bucket": self.ref.bucket, "Key": self.ref.key}
        if self.head.version_id and self.head.version_id != "null":
            source["VersionId"] = self.head.version_id
        try:
            response = self.client.upload_part_copy(
                **self._target(),
                PartNumber=len(self.parts) + 1,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end - 1}",
                CopySourceIfMatch=self.head.etag,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "UploadPartCopy") from None
        self.parts.append({"PartNumber": len(self.parts) + 1, "ETag": response["CopyPartResult"]["ETag"]})

    def upload(self, data: bytes) -> None:
        try:
            response = self.client.upload_part(**self._target(), PartNumber=len(self.parts) + 1, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "UploadPart") from None
        self.parts.append({"PartNumber": len(self.parts) + 1, "ETag": response["ETag"]})
        self.bytes_uploaded += len(data)

    def complete(self) -> str | None:
        try:
            response = self.client.complete_multipart_upload(
                **self._target(), MultipartUpload={"Parts": self.parts}, IfMatch=self.head.etag
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "CompleteMultipartUpload") from None
        return response.get("VersionId")

    def abort(self) -> None:
        """Best effort: an upload left behind is invisible and removed by a lifecycle rule."""
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(**self._target())

    @contextlib.contextmanager
    def aborting_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.abort()
            raise


def _head_of(response: Mapping[str, Any]) -> ObjectHead:
    """The head of a HEAD or GET response."""
    if response.get("SSECustomerAlgorithm"):
        raise ObjectUnreadableError("object uses SSE-C; its customer key is not available to rewrap")
    return ObjectHead(
        etag=response["ETag"],
        size=int(response.get("ContentLength", 0)),
        metadata=dict(response.get("Metadata", {})),
        version_id=response.get("VersionId"),
        headers={name: response[name] for name in _RESTATED if response.get(name) not in (None, "")},
    )


def _where(ref: ObjectRef) -> dict[str, Any]:
    where: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id:
        where["VersionId"] = ref.version_id
    return where


def _write_headers(head: ObjectHead) -> dict[str, Any]:
    headers = dict(head.headers)
    # S3 rejects an SSE-KMS key id without the matching algorithm, and aws:kms key ids on AES256.
    if headers.get("ServerSideEncryption") != "aws:kms":
        headers.pop("SSEKMSKeyId", None)
        headers.pop("BucketKeyEnabled", None)
    return headers


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _translate(exc: Exception, operation: str) -> RewrapError:
    code = _code(exc)
    if isinstance(exc, BotoCoreError) or code in _RETRYABLE:
        return StorageUnavailableError(f"S3 {operation} failed ({code or type(exc).__name__})")
    if code in _MISSING:
        return ObjectChangedError(f"object disappeared during {operation}", code="object-gone")
    if code in _CHANGED:
        return ObjectChangedError(f"object changed since it was read; {operation} refused ({code})")
    if operation in ("HEAD", "GET") and code == "InvalidObjectState":
        return ObjectUnreadableError("object is archived and not restored; restore it to read it")
    if operation in ("HEAD", "GET") and code in _DENIED:
        return ObjectUnreadableError(f"S3 denied {operation} ({code}); check the bucket policy and key policy")
    if code in _DENIED:
        return StorageDeniedError(f"S3 denied {operation} ({code}); check bucket policy, Object Lock, archive tier")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    if status >= 500:
        return StorageUnavailableError(f"S3 {operation} failed ({code})")
    return PermanentError(f"S3 {operation} failed ({code})", code="s3-error")
