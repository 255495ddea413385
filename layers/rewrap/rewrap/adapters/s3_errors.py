"""The S3 error table: the one place S3's answers become rewrap's errors (retryable or permanent)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from rewrap.errors import (
    ObjectChangedError,
    ObjectUnreadableError,
    PermanentError,
    RewrapError,
    StorageDeniedError,
    StorageUnavailableError,
)

# The S3 error table: code (or HTTP status, for bodiless HEAD answers) -> what it means. "retryable",
# "changed" (our condition failed: retry), "missing" (gone: nothing to do), "denied", "unreadable",
# anything else is the code of a permanent failure. Codes not listed: 5xx/429 retryable, else permanent.
ERRORS: dict[str, str] = {
    **dict.fromkeys(("500", "503", "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"), "retryable"),
    **dict.fromkeys(("Throttling", "ThrottlingException", "TooManyRequests", "TooManyRequestsException"), "retryable"),
    **dict.fromkeys(("OperationAborted", "RequestTimeTooSkewed", "KMS.ThrottlingException"), "retryable"),
    **dict.fromkeys(("404", "NoSuchKey", "NotFound", "NoSuchVersion", "405", "MethodNotAllowed"), "missing"),
    **dict.fromkeys(("412", "PreconditionFailed", "ConditionalRequestConflict", "409"), "changed"),
    **dict.fromkeys(
        ("403", "AccessDenied", "AllAccessDisabled", "AccountProblem", "KMS.AccessDeniedException"), "denied"
    ),
    "InvalidObjectState": "unreadable",
    "NoSuchBucket": "no-such-bucket",
    "MetadataTooLarge": "metadata-too-large",
    "EntityTooLarge": "too-large",
    "InvalidRequest": "s3-invalid-request",
    "InvalidArgument": "s3-invalid-request",
    "AccessControlListNotSupported": "s3-invalid-request",
    "KMS.DisabledException": "kms-key-disabled",
    "KMS.NotFoundException": "kms-key-not-found",
    "KMS.KMSInvalidStateException": "kms-key-disabled",
}
MISSING_CODES = {code for code, kind in ERRORS.items() if kind == "missing"}
# What S3 answers a request for an SSE-C object without its customer key.
BAD_REQUEST_CODES = ("400", "InvalidRequest")


def error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: Exception, operation: str) -> RewrapError:
    """The one place S3 errors become rewrap's (see ``ERRORS``)."""
    code = error_code(exc)
    if isinstance(exc, ParamValidationError):  # our request is malformed: it will be every time
        return PermanentError(f"S3 {operation} request invalid ({str(exc)[:200]})", code="s3-invalid-request")
    if isinstance(exc, BotoCoreError):  # transport: connection, timeout, incomplete read
        return StorageUnavailableError(f"S3 {operation} failed ({type(exc).__name__})")
    status = (
        int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) if isinstance(exc, ClientError) else 0
    )
    kind = ERRORS.get(code) or ("retryable" if status >= 500 or status == 429 else "s3-error")
    if kind == "retryable":
        return StorageUnavailableError(f"S3 {operation} failed ({code})")
    if kind == "missing":
        return ObjectChangedError(f"object disappeared during {operation}", code="object-gone")
    if kind == "changed":
        return ObjectChangedError(f"object changed since it was read; {operation} refused ({code})")
    if kind == "unreadable":
        return ObjectUnreadableError(f"S3 refused {operation}: the object is archived", reason="archived")
    if kind == "denied" and operation in ("HEAD", "GET"):  # cannot look at it: reported, never a false "safe"
        return ObjectUnreadableError(
            f"S3 denied {operation} ({code}); check the bucket policy, the key policy, and for a Requester Pays "
            "bucket REWRAP_REQUESTER_PAYS=true",
            reason="access-denied",
        )
    if kind == "denied":
        return StorageDeniedError(
            f"S3 denied {operation} ({code}); check the bucket policy, Object Lock, and for a Requester Pays "
            "bucket REWRAP_REQUESTER_PAYS=true"
        )
    return PermanentError(f"S3 {operation} failed ({code})", code=kind)
