"""A multipart rewrite of one object: unchanged byte ranges copied server-side, changed ones uploaded, and
the upload completed only if the object is still as read (``s3_conditions``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rewrap.adapters.s3_requests import source, unchanged_source, version_id
from rewrap.core.ports import ObjectHead, ObjectRef


class Requests(Protocol):
    """What a rewrite needs of the store (``S3Store``): its client, its error translation, its re-check."""

    client: Any

    def call(self, operation: str, method: Any, **params: Any) -> Any: ...

    def confirm_unchanged(self, ref: ObjectRef, head: ObjectHead) -> None: ...


class Rewrite:
    """One multipart rewrite of an object, in part order. Abort it on any failure."""

    def __init__(self, store: Requests, ref: ObjectRef, head: ObjectHead, upload_id: str, checksum: str | None) -> None:
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
        response = self.store.call(
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
        response = self.store.call(
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
        """Completes only if the object is still as read: CompleteMultipartUpload checks the ETag alone, so
        the head is read again first (a multipart rewrite takes a while)."""
        self.store.confirm_unchanged(self.ref, self.head)
        response = self.store.call(
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
