"""What S3 holds about an object besides its body and user metadata, and how a rewrite restates it.

A rewrite restates everything S3 would otherwise reset: content headers and the raw Expires value,
website redirect, storage class, SSE-S3 / SSE-KMS / DSSE-KMS settings, the checksum algorithm,
Object Lock retention and legal hold, and ACL grants. Reading them is ``head_of``; the write
parameters are ``restated``; the object ACL becomes Grant* parameters in ``grant_parameters``.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from rewrap.core.ports import ObjectHead
from rewrap.errors import ObjectUnreadableError

# HEAD response fields that PutObject / CopyObject / CreateMultipartUpload accept under the same name.
RESTATED = (
    "ContentType",
    "ContentEncoding",
    "ContentLanguage",
    "ContentDisposition",
    "CacheControl",
    "WebsiteRedirectLocation",
    "StorageClass",
    "ServerSideEncryption",
    "SSEKMSKeyId",
    "BucketKeyEnabled",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
)
# HEAD (with ChecksumMode=ENABLED) field -> the algorithm a write asks for.
_CHECKSUMS = {
    "ChecksumCRC64NVME": "CRC64NVME",
    "ChecksumCRC32": "CRC32",
    "ChecksumCRC32C": "CRC32C",
    "ChecksumSHA1": "SHA1",
    "ChecksumSHA256": "SHA256",
}
# How rewrap computes each algorithm's checksum of a body it writes (big-endian digest, base64 on the wire).
_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "CRC32C": lambda data: _crt().crc32c(data).to_bytes(4, "big"),
    "CRC64NVME": lambda data: _crt().crc64nvme(data).to_bytes(8, "big"),
    "SHA1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "SHA256": lambda data: hashlib.sha256(data).digest(),
}
# What botocore asks S3 to keep for a body written without an algorithm of its own.
DEFAULT_CHECKSUM = "CRC32"
# Multipart uploads take a full-object checksum only for the CRC family; SHA ones are composite.
_FULL_OBJECT_CHECKSUMS = {"CRC64NVME", "CRC32", "CRC32C"}
# Object ACL permission -> the Grant* parameter that restates it (WRITE does not apply to objects).
_GRANTS = {
    "FULL_CONTROL": "GrantFullControl",
    "READ": "GrantRead",
    "READ_ACP": "GrantReadACP",
    "WRITE_ACP": "GrantWriteACP",
}
EMPTY_MD5 = "1B2M2Y8AsgTpgAmY2PhCfg=="  # base64 MD5 of no bytes
_ARCHIVE_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}  # GLACIER_IR is read like STANDARD
_ARCHIVE_TIERS = {"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"}  # INTELLIGENT_TIERING ArchiveStatus


def restated(head: ObjectHead, *, multipart: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The write parameters that keep the object's headers and settings, and the headers to send as
    they were read (a raw Expires value). ACL grants and tags come on top (they need more requests)."""
    params = dict(head.headers)
    raw = {"Expires": params.pop("Expires")} if params.get("Expires") else {}
    algorithm = params.get("ChecksumAlgorithm")
    if multipart and algorithm:
        params["ChecksumType"] = "FULL_OBJECT" if algorithm in _FULL_OBJECT_CHECKSUMS else "COMPOSITE"
    # S3 rejects a KMS key id without a KMS algorithm, and Bucket Keys with DSSE-KMS.
    if params.get("ServerSideEncryption") not in ("aws:kms", "aws:kms:dsse"):
        params.pop("SSEKMSKeyId", None)
    if params.get("ServerSideEncryption") != "aws:kms":
        params.pop("BucketKeyEnabled", None)
    # A retention date already past protects nothing, and S3 refuses to set one.
    until = params.get("ObjectLockRetainUntilDate")
    if not (until and "ObjectLockMode" in params and until > datetime.now(UTC)):
        params.pop("ObjectLockMode", None)
        params.pop("ObjectLockRetainUntilDate", None)
    return params, raw


def locks(params: Mapping[str, Any]) -> bool:
    """Whether the write sets Object Lock headers, which S3 accepts only with a body digest."""
    return "ObjectLockMode" in params or params.get("ObjectLockLegalHoldStatus") == "ON"


def grant_parameters(acl: Mapping[str, Any]) -> dict[str, str]:
    """A GetObjectAcl answer as the Grant* parameters of a write."""
    grants: dict[str, list[str]] = defaultdict(list)
    for grant in acl.get("Grants", []):
        parameter, grantee = _GRANTS.get(grant.get("Permission", "")), grant.get("Grantee", {})
        if parameter is None:
            continue
        if grantee.get("Type") == "Group":
            grants[parameter].append(f'uri="{grantee["URI"]}"')
        elif grantee.get("Type") == "AmazonCustomerByEmail":
            grants[parameter].append(f'emailAddress="{grantee["EmailAddress"]}"')
        else:
            grants[parameter].append(f'id="{grantee["ID"]}"')
    return {parameter: ", ".join(values) for parameter, values in grants.items()}


def body_checksum(algorithm: str | None, data: bytes) -> tuple[str, str]:
    """(algorithm, base64 value) of the full-object checksum of ``data``: the object's own algorithm, or
    the one botocore asks for by default."""
    algorithm = algorithm if algorithm in _DIGESTS else DEFAULT_CHECKSUM
    return algorithm, base64.b64encode(_DIGESTS[algorithm](data)).decode()


def _crt() -> Any:
    from awscrt import checksums  # what botocore computes CRC32C and CRC64NVME with

    return checksums


def head_of(response: Mapping[str, Any]) -> ObjectHead:
    """The head of a HEAD or GET response, with when it was read and the tag count and full-object
    checksum S3 reported."""
    if response.get("SSECustomerAlgorithm"):
        raise ObjectUnreadableError("object uses SSE-C; its customer key is not available", reason="sse-c")
    headers = {name: response[name] for name in RESTATED if response.get(name) not in (None, "")}
    # botocore parses Expires as a date; ExpiresString is the value as stored, restated verbatim.
    expires = response.get("ExpiresString") or response.get("Expires")
    if expires:
        headers["Expires"] = expires if isinstance(expires, str) else expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
    field = next((field for field in _CHECKSUMS if response.get(field)), None)
    checksum = None
    if field:
        headers["ChecksumAlgorithm"] = _CHECKSUMS[field]
        if response.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            checksum = f"{_CHECKSUMS[field]}:{response[field]}"
    last_modified = response.get("LastModified")
    return ObjectHead(
        etag=response["ETag"],
        size=int(response.get("ContentLength", 0)),
        metadata=dict(response.get("Metadata", {})),
        version_id=response.get("VersionId"),
        headers=headers,
        archived=_archived(response.get("StorageClass"), response.get("ArchiveStatus"), response.get("Restore")),
        last_modified=last_modified,
        read_at=time.monotonic(),
        fresh=_fresh(last_modified, response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")),
        tag_count=int(response["TagCount"]) if response.get("TagCount") is not None else None,
        checksum=checksum,
    )


def _fresh(last_modified: datetime | None, date: str | None) -> bool:
    """Whether S3 answered within the second the object was last modified (its ``Date``, to the second,
    is no later): a change in the rest of that second leaves ``Last-Modified`` as it was."""
    if last_modified is None or not date:
        return True
    try:
        answered = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return True
    return int(answered.timestamp()) <= int(last_modified.timestamp())


def _archived(storage_class: str | None, archive_status: str | None, restore: str | None) -> bool:
    """In an archive tier without a finished restore (Restore: ongoing-request="false")."""
    if storage_class not in _ARCHIVE_CLASSES and archive_status not in _ARCHIVE_TIERS:
        return False
    return 'ongoing-request="false"' not in (restore or "")


def listed_archived(item: Mapping[str, Any]) -> bool:
    """A listed object in GLACIER / DEEP_ARCHIVE that is not restored (RestoreStatus when S3 gives it)."""
    if item.get("StorageClass") not in _ARCHIVE_CLASSES:
        return False
    status = item.get("RestoreStatus") or {}
    return not (status.get("RestoreExpiryDate") and not status.get("IsRestoreInProgress"))
