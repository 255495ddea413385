"""The parameters of S3 requests that name an object: where it is, the copy source and its condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewrap.core.ports import ObjectHead, ObjectRef


def where(ref: ObjectRef) -> dict[str, Any]:
    where: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id:
        where["VersionId"] = ref.version_id
    return where


def source(ref: ObjectRef, head: ObjectHead) -> dict[str, str]:
    source = {"Bucket": ref.bucket, "Key": ref.key}
    if head.version_id and head.version_id != "null":
        source["VersionId"] = head.version_id
    return source


def unchanged_source(head: ObjectHead) -> dict[str, Any]:
    """The copy-source condition that refuses (412) a source changed since it was read: another
    writer's metadata-only self-copy keeps the ETag, only the time shows it. Never with
    CopySourceIfMatch: S3 copies when that holds, whatever the time says. The body is guarded by
    the destination's or the completion's If-Match. No LastModified read: the ETag is all there is."""
    if head.last_modified is None:
        return {"CopySourceIfMatch": head.etag}
    return {"CopySourceIfUnmodifiedSince": head.last_modified}


def version_id(response: Mapping[str, Any]) -> str | None:
    """The new object's version id (None on a bucket without versioning)."""
    version = response.get("VersionId")
    return str(version) if version else None
