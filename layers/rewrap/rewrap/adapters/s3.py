"""S3 adapter: one GET for head and body, conditional PUT and metadata-replacing self-copy.

Every write is conditional on what was read (``s3_conditions``): the ETag (If-Match) on every path and
Last-Modified on the copy paths, with the head read again where those cannot see a change, so a
concurrent writer is never overwritten and a deleted object is never brought back. A rewrite restates
everything S3 would otherwise reset: content headers and the raw Expires value, website redirect, storage class,
SSE-S3 / SSE-KMS / DSSE-KMS settings, the checksum algorithm, Object Lock retention and legal
hold, tags and ACL grants (unless the bucket enforces bucket-owner ownership); ``s3_attributes``
says how. An object owned by another account is never rewritten: the new object would belong to
us. S3's errors become rewrap's in one table, ``s3_errors``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.adapters.s3_attributes import (
    EMPTY_MD5,
    body_checksum,
    grant_parameters,
    head_of,
    listed_archived,
    locks,
    restated,
)
from rewrap.adapters.s3_conditions import Recheck, TagCounts
from rewrap.adapters.s3_errors import BAD_REQUEST_CODES, MISSING_CODES, error_code, translate
from rewrap.adapters.s3_multipart import Rewrite
from rewrap.adapters.s3_records import OwnRecords
from rewrap.adapters.s3_requests import source, unchanged_source, version_id, where
from rewrap.core.ports import MAX_COPY_PART_BYTES, MAX_PARTS, BodyStream, Listed, ObjectBody, ObjectHead, ObjectRef
from rewrap.errors import ObjectUnreadableError, PermanentError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Store(OwnRecords):
    def __init__(
        self,
        client: S3Client,
        *,
        multipart_copy_threshold: int = MAX_COPY_PART_BYTES,
        requester_pays: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        # CopyObject handles up to 5 GiB; larger envelopes are copied part by part.
        self.multipart_copy_threshold = multipart_copy_threshold
        self.requester_pays = requester_pays
        # Per bucket, looked up once per container: (object ownership setting, owner's canonical id).
        self._buckets: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._tags = TagCounts()
        self._recheck = Recheck(sleep)
        # Headers sent exactly as they were read (a raw Expires value), set around one call per thread.
        self._raw = threading.local()
        client.meta.events.register("before-sign.s3", self._add_headers, unique_id=f"rewrap-store-{id(self)}")

    def _add_headers(self, request: Any, **_: Any) -> None:
        for name, value in getattr(self._raw, "headers", {}).items():
            request.headers[name] = value
        if self.requester_pays:
            request.headers["x-amz-request-payer"] = "requester"

    @contextlib.contextmanager
    def _sending(self, headers: Mapping[str, str]) -> Iterator[None]:
        self._raw.headers = headers
        try:
            yield
        finally:
            self._raw.headers = {}

    def call(self, operation: str, method: Any, **params: Any) -> Any:
        try:
            return method(**params)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation) from exc

    def list_page(
        self, bucket: str, prefix: str, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[Listed], str | None]:
        """One page of the listing and the token of the next page (None at the end)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if continuation_token:
            params["ContinuationToken"] = continuation_token
        response = self.call("LIST", self.client.list_objects_v2, **params, OptionalObjectAttributes=["RestoreStatus"])
        items = [
            Listed(o["Key"], int(o.get("Size", 0)), o["LastModified"], archived=listed_archived(o))
            for o in response.get("Contents", [])
        ]
        return items, response.get("NextContinuationToken") if response.get("IsTruncated") else None

    def list_versions_page(
        self, bucket: str, prefix: str, marker: tuple[str, str] | None, max_keys: int = 1000
    ) -> tuple[list[Listed], tuple[str, str] | None]:
        """One page of object versions (current and noncurrent; delete markers left out) and the
        (key marker, version id marker) of the next page (None at the end)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if marker:
            params["KeyMarker"], params["VersionIdMarker"] = marker
        response = self.call("LIST versions", self.client.list_object_versions, **params)
        items = [
            Listed(v["Key"], int(v.get("Size", 0)), v["LastModified"], v.get("VersionId"), bool(v.get("IsLatest")))
            for v in response.get("Versions", [])
        ]
        if not response.get("IsTruncated"):
            return items, None
        return items, (response.get("NextKeyMarker", ""), response.get("NextVersionIdMarker", ""))

    def head(self, ref: ObjectRef) -> ObjectHead | None:
        try:
            response = self.client.head_object(**where(ref), ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc)
            if code in MISSING_CODES:  # 405: the version asked for is a delete marker
                return None
            if code in BAD_REQUEST_CODES:  # what S3 answers a HEAD of an SSE-C object without its key
                raise ObjectUnreadableError(
                    "object uses SSE-C; its customer key is not available", reason="sse-c"
                ) from exc
            raise translate(exc, "HEAD") from exc
        return head_of(response)

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        """One GET for what a HEAD and a GET would tell: the head, and the body if it is at most
        ``limit`` bytes (a larger body is left unread, the connection dropped). None when gone."""
        try:
            response = self.client.get_object(**where(ref), ChecksumMode="ENABLED")
            head = head_of(response)
            if head.size > limit:
                response["Body"].close()
                return head, None
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            if error_code(exc) in BAD_REQUEST_CODES:
                return self._head_only(ref)
            raise translate(exc, "GET") from exc
        return head, ObjectBody(data=data, etag=head.etag)

    def _head_only(self, ref: ObjectRef) -> tuple[ObjectHead, None] | None:
        """A GET refused as a bad request: the HEAD tells why (SSE-C), or what else it is."""
        head = self.head(ref)
        return None if head is None else (head, None)

    def get_body(self, ref: ObjectRef, head: ObjectHead) -> ObjectBody | None:
        try:
            response = self.client.get_object(**where(ref), IfMatch=head.etag)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise translate(exc, "GET") from exc
        return ObjectBody(data=data, etag=response["ETag"], head=head_of(response))

    def open_body(self, ref: ObjectRef, head: ObjectHead, chunk_bytes: int = 1024 * 1024) -> BodyStream | None:
        """The body as a stream of chunks (bounded memory), only if it still has ``head.etag``."""
        try:
            response = self.client.get_object(**where(ref), IfMatch=head.etag)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise translate(exc, "GET") from exc

        def chunks() -> Iterator[bytes]:
            try:
                yield from response["Body"].iter_chunks(chunk_bytes)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "GET") from exc

        return BodyStream(chunks())

    def start_rewrite(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> Rewrite:
        """A multipart upload that replaces the object part by part: unchanged byte ranges are copied
        server-side, changed ones uploaded; it completes only if the object still has ``head.etag``."""
        params, raw = self._restated(ref, head, multipart=True)
        with self._sending(raw):
            upload = self.call(
                "CreateMultipartUpload",
                self.client.create_multipart_upload,
                Bucket=ref.bucket,
                Key=ref.key,
                Metadata=dict(metadata),
                **params,
            )
        return Rewrite(self, ref, head, upload["UploadId"], params.get("ChecksumAlgorithm"))

    def body_checksum(self, head: ObjectHead, data: bytes) -> str:
        return ":".join(body_checksum(head.headers.get("ChecksumAlgorithm"), data))

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        params, raw = self._restated(ref, head)
        if body.checksum:  # sent as computed: S3 checks the body against it and reports it back
            algorithm, value = body.checksum.split(":", 1)
            params.update({"ChecksumAlgorithm": algorithm, f"Checksum{algorithm}": value})
        self._recheck.before_put(head, self._head_again(ref))
        with self._sending(raw):
            response = self.call(
                "PUT",
                self.client.put_object,
                Bucket=ref.bucket,
                Key=ref.key,
                Body=body.data,
                Metadata=dict(metadata),
                IfMatch=head.etag,
                **params,
            )
        return version_id(response)

    def replace_metadata(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        if head.size > self.multipart_copy_threshold:
            return self._replace_metadata_multipart(ref, head, metadata)
        params, raw = self._restated(ref, head, copy=True)
        if locks(params):
            raw["Content-MD5"] = EMPTY_MD5  # Object Lock headers come with a body digest (the copy's is empty)
        self._recheck.before_copy(head, self._head_again(ref))
        with self._sending(raw):
            response = self.call(
                "COPY",
                self.client.copy_object,
                Bucket=ref.bucket,
                Key=ref.key,
                CopySource=source(ref, head),
                MetadataDirective="REPLACE",
                TaggingDirective="COPY",
                Metadata=dict(metadata),
                IfMatch=head.etag,
                **unchanged_source(head),
                **params,
            )
        return version_id(response)

    def _head_again(self, ref: ObjectRef) -> Callable[[], ObjectHead | None]:
        """The object's current head (never the version read: a change makes a new version)."""
        return lambda: self.head(ObjectRef(ref.bucket, ref.key))

    def confirm_unchanged(self, ref: ObjectRef, head: ObjectHead) -> None:
        """Raises ``ObjectChangedError`` unless the object is still as read (one HEAD)."""
        self._recheck.confirm(head, self._head_again(ref))

    def _replace_metadata_multipart(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        part = max(self.multipart_copy_threshold, -(-head.size // MAX_PARTS))
        rewrite = self.start_rewrite(ref, head, metadata)
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
        self.call(
            "PUT",
            self.client.put_object,
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            IfNoneMatch="*",
        )

    def _tagging(self, ref: ObjectRef, head: ObjectHead) -> str:
        try:
            tags = self.call("GET tagging", self.client.get_object_tagging, **where(ref))["TagSet"]
        except BaseException:
            self._tags.read(ref.bucket, head, None)
            raise
        self._tags.read(ref.bucket, head, len(tags))
        return urlencode([(t["Key"], t["Value"]) for t in tags])

    # --- what a rewrite restates ----------------------------------------------------------------
    def _restated(
        self, ref: ObjectRef, head: ObjectHead, *, multipart: bool = False, copy: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The write parameters that keep everything S3 holds about the object (``s3_attributes``),
        and the headers to send as they were read. Raises ``foreign-owner`` for an object owned by
        another account. Tags are read where the read's tag count cannot say there are none (``TagCounts``)."""
        params, raw = restated(head, multipart=multipart)
        params.update(self._grants(ref))
        if not copy and self._tags.must_read(ref.bucket, head):  # a copy keeps the tags itself (TaggingDirective=COPY)
            tagging = self._tagging(ref, head)
            if tagging:
                params["Tagging"] = tagging
        return params, raw

    def _grants(self, ref: ObjectRef) -> dict[str, str]:
        """The object's ACL as Grant* parameters; none when the bucket enforces bucket-owner ownership
        (ACLs are disabled there, the bucket owner owns every object)."""
        ownership, bucket_owner = self._bucket(ref.bucket)
        if ownership == "BucketOwnerEnforced":
            return {}
        acl = self.call("GET ACL", self.client.get_object_acl, **where(ref))
        if acl.get("Owner", {}).get("ID") != bucket_owner:
            raise PermanentError(
                "object is owned by another account; rewriting it would transfer its ownership",
                code="foreign-owner",
            )
        return grant_parameters(acl)

    def _bucket(self, bucket: str) -> tuple[str, str]:
        """(ObjectOwnership, the bucket owner's canonical id), once per bucket per container."""
        with self._lock:  # held for the lookup: concurrent first writes to a bucket wait for one answer
            known = self._buckets.get(bucket)
            if known is None:
                known = self._buckets[bucket] = self._look_up(bucket)
        return known

    def _look_up(self, bucket: str) -> tuple[str, str]:
        try:
            rules = self.client.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
            ownership = rules[0]["ObjectOwnership"] if rules else "ObjectWriter"
        except ClientError as exc:
            if error_code(exc) != "OwnershipControlsNotFoundError":
                raise translate(exc, "GET ownership controls") from exc
            ownership = "ObjectWriter"  # buckets from before ownership controls: ACLs apply
        except BotoCoreError as exc:
            raise translate(exc, "GET ownership controls") from exc
        owner = (
            ""
            if ownership == "BucketOwnerEnforced"
            else self.call("GET bucket ACL", self.client.get_bucket_acl, Bucket=bucket)["Owner"]["ID"]
        )
        return ownership, owner
