"""S3 adapter: HEAD, conditional GET, conditional PUT and metadata-replacing self-copy.

Every write is conditional on the ETag that was read (If-Match), so a concurrent writer is never
overwritten and a deleted object is never brought back. A rewrite restates everything S3 would
otherwise reset: content headers and the raw Expires value, website redirect, storage class,
SSE-S3 / SSE-KMS / DSSE-KMS settings, the checksum algorithm, Object Lock retention and legal
hold, tags and ACL grants (unless the bucket enforces bucket-owner ownership); ``s3_attributes``
says how. An object owned by another account is never rewritten: the new object would belong to
us. S3's errors become rewrap's in one table, ``s3_errors``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.adapters.s3_attributes import (
    EMPTY_MD5,
    TagCounts,
    grant_parameters,
    head_of,
    listed_archived,
    locks,
    restated,
)
from rewrap.adapters.s3_errors import BAD_REQUEST_CODES, MISSING_CODES, error_code, translate
from rewrap.adapters.s3_records import OwnRecords
from rewrap.adapters.s3_requests import source, unchanged_source, version_id, where
from rewrap.core.ports import MAX_COPY_PART_BYTES, MAX_PARTS, BodyStream, Listed, ObjectBody, ObjectHead, ObjectRef
from rewrap.errors import ObjectUnreadableError, PermanentError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Store(OwnRecords):
    def __init__(
        self, client: S3Client, *, multipart_copy_threshold: int = MAX_COPY_PART_BYTES, requester_pays: bool = False
    ) -> None:
        self.client = client
        # CopyObject handles up to 5 GiB; larger envelopes are copied part by part.
        self.multipart_copy_threshold = multipart_copy_threshold
        self.requester_pays = requester_pays
        # Per bucket, looked up once per container: (object ownership setting, owner's canonical id).
        self._buckets: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        # Headers sent exactly as they were read (a raw Expires value), set around one call per thread.
        self._raw = threading.local()
        self._tag_counts = TagCounts()
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

    def _call(self, operation: str, method: Any, **params: Any) -> Any:
        try:
            return method(**params)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation) from None

    def list_page(
        self, bucket: str, prefix: str, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[Listed], str | None]:
        """One page of the listing and the token of the next page (None at the end)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if continuation_token:
            params["ContinuationToken"] = continuation_token
        response = self._call("LIST", self.client.list_objects_v2, **params, OptionalObjectAttributes=["RestoreStatus"])
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
        response = self._call("LIST versions", self.client.list_object_versions, **params)
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
                ) from None
            raise translate(exc, "HEAD") from None
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
            raise translate(exc, "GET") from None
        return head, ObjectBody(data=data, etag=head.etag, tag_count=int(response.get("TagCount") or 0))

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
            raise translate(exc, "GET") from None
        return ObjectBody(
            data=data, etag=response["ETag"], tag_count=int(response.get("TagCount") or 0), head=head_of(response)
        )

    def open_body(self, ref: ObjectRef, head: ObjectHead, chunk_bytes: int = 1024 * 1024) -> BodyStream | None:
        """The body as a stream of chunks (bounded memory), only if it still has ``head.etag``."""
        try:
            response = self.client.get_object(**where(ref), IfMatch=head.etag)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise translate(exc, "GET") from None

        def chunks() -> Iterator[bytes]:
            try:
                yield from response["Body"].iter_chunks(chunk_bytes)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "GET") from None

        return BodyStream(chunks(), int(response.get("TagCount") or 0))

    def start_rewrite(
        self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str], tag_count: int | None
    ) -> Rewrite:
        """A multipart upload that replaces the object part by part: unchanged byte ranges are copied
        server-side, changed ones uploaded; it completes only if the object still has ``head.etag``."""
        params, raw = self._restated(ref, head, tag_count, multipart=True)
        with self._sending(raw):
            upload = self._call(
                "CreateMultipartUpload",
                self.client.create_multipart_upload,
                Bucket=ref.bucket,
                Key=ref.key,
                Metadata=dict(metadata),
                **params,
            )
        return Rewrite(self, ref, head, upload["UploadId"], params.get("ChecksumAlgorithm"))

    def put_body(self, ref: ObjectRef, head: ObjectHead, body: ObjectBody, metadata: Mapping[str, str]) -> str | None:
        params, raw = self._restated(ref, head, body.tag_count)
        with self._sending(raw):
            response = self._call(
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
        params, raw = self._restated(ref, head, None, copy=True)
        if locks(params):
            raw["Content-MD5"] = EMPTY_MD5  # Object Lock headers come with a body digest (the copy's is empty)
        with self._sending(raw):
            response = self._call(
                "COPY",
                self.client.copy_object,
                Bucket=ref.bucket,
                Key=ref.key,
                CopySource=source(ref, head),
                IfMatch=head.etag,
                **unchanged_source(head),
                MetadataDirective="REPLACE",
                TaggingDirective="COPY",
                Metadata=dict(metadata),
                **params,
            )
        return version_id(response)

    def _replace_metadata_multipart(self, ref: ObjectRef, head: ObjectHead, metadata: Mapping[str, str]) -> str | None:
        part = max(self.multipart_copy_threshold, -(-head.size // MAX_PARTS))
        rewrite = self.start_rewrite(ref, head, metadata, tag_count=None)
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
        self._call(
            "PUT",
            self.client.put_object,
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            IfNoneMatch="*",
        )

    def _tagging(self, ref: ObjectRef, count: int | None) -> str:
        """The object's tags as a write's Tagging; read only where the GET's ``count`` cannot tell."""
        if not self._tag_counts.must_read(ref.bucket, count):
            return ""
        tags = self._call("GET tagging", self.client.get_object_tagging, **where(ref))["TagSet"]
        self._tag_counts.saw(ref.bucket, count, len(tags))
        return urlencode([(t["Key"], t["Value"]) for t in tags])

    # --- what a rewrite restates ----------------------------------------------------------------
    def _restated(
        self, ref: ObjectRef, head: ObjectHead, tag_count: int | None, *, multipart: bool = False, copy: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The write parameters that keep everything S3 holds about the object (``s3_attributes``),
        and the headers to send as they were read. Raises ``foreign-owner`` for an object owned by
        another account. ``tag_count``: what the GET said (``TagCounts``); None, tags are read."""
        params, raw = restated(head, multipart=multipart)
        params.update(self._grants(ref))
        tagging = "" if copy else self._tagging(ref, tag_count)  # a copy keeps them (TaggingDirective=COPY)
        if tagging:
            params["Tagging"] = tagging
        return params, raw

    def _grants(self, ref: ObjectRef) -> dict[str, str]:
        """The object's ACL as Grant* parameters; none when the bucket enforces bucket-owner ownership
        (ACLs are disabled there, the bucket owner owns every object)."""
        ownership, bucket_owner = self._bucket(ref.bucket)
        if ownership == "BucketOwnerEnforced":
            return {}
        acl = self._call("GET ACL", self.client.get_object_acl, **where(ref))
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
                raise translate(exc, "GET ownership controls") from None
            ownership = "ObjectWriter"  # buckets from before ownership controls: ACLs apply
        except BotoCoreError as exc:
            raise translate(exc, "GET ownership controls") from None
        owner = (
            ""
            if ownership == "BucketOwnerEnforced"
            else self._call("GET bucket ACL", self.client.get_bucket_acl, Bucket=bucket)["Owner"]["ID"]
        )
        return ownership, owner


class Rewrite:
    """One multipart rewrite of an object, in part order. Abort it on any failure."""

    def __init__(self, store: S3Store, ref: ObjectRef, head: ObjectHead, upload_id: str, checksum: str | None) -> None:
        self.store = store
        self.client = store.client
        self.ref = ref
        self.head = head
        self.upload_id = upload_id
        self.checksum = checksum  # the algorithm each part carries (the upload's), or None
        self.parts: list[dict[str, Any]] = []
        self.bytes_uploaded = 0

    def _target(self) -> dict[str, Any]:
        return {"Bucket": self.ref.bucket, "Key": self.ref.key, "UploadId": self.upload_id}

    def _part(self, response: Mapping[str, Any]) -> None:
        part = {"PartNumber": len(self.parts) + 1, "ETag": response["ETag"]}
        if self.checksum and response.get(f"Checksum{self.checksum}"):
            part[f"Checksum{self.checksum}"] = response[f"Checksum{self.checksum}"]
        self.parts.append(part)

    def copy_range(self, start: int, end: int) -> None:
        """Copy source bytes [start, end) server-side as the next part (no bytes pass through us)."""
        response = self.store._call(
            "UploadPartCopy",
            self.client.upload_part_copy,
            **self._target(),
            PartNumber=len(self.parts) + 1,
            CopySource=source(self.ref, self.head),
            CopySourceRange=f"bytes={start}-{end - 1}",
            **unchanged_source(self.head),
        )
        self._part(response["CopyPartResult"])

    def upload(self, data: bytes) -> None:
        checksum = {"ChecksumAlgorithm": self.checksum} if self.checksum else {}
        response = self.store._call(
            "UploadPart",
            self.client.upload_part,
            **self._target(),
            PartNumber=len(self.parts) + 1,
            Body=data,
            **checksum,
        )
        self._part(response)
        self.bytes_uploaded += len(data)

    def complete(self) -> str | None:
        response = self.store._call(
            "CompleteMultipartUpload",
            self.client.complete_multipart_upload,
            **self._target(),
            MultipartUpload={"Parts": self.parts},
            IfMatch=self.head.etag,
        )
        return version_id(response)

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
