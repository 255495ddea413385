"""One error hierarchy. Every failure is either retryable (try again later, it may pass) or
permanent (it will fail the same way until someone changes the object, the key or the config).

Messages never contain secrets, signatures or plaintext; ``code`` is a short stable identifier
that ends up in results, metrics and S3 Batch Operations reports.
"""

from __future__ import annotations


class RewrapError(Exception):
    retryable: bool = False
    code: str = "error"
    # What NCP answered, when the error stands for a reply (its reason names them too).
    http_status: int | None = None
    error_code: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def reason(self) -> str:
        return f"{self.code}: {self}"


class RetryableError(RewrapError):
    retryable = True
    code = "retryable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class PermanentError(RewrapError):
    retryable = False
    code = "permanent"


# --- configuration and input -------------------------------------------------------------------
class ConfigError(PermanentError):
    code = "config"


class UnsupportedEventError(PermanentError):
    code = "unsupported-event"


class BucketNotAllowedError(PermanentError):
    code = "bucket-not-allowed"


class ObjectRejectedError(PermanentError):
    """The object cannot be rotated as it is: malformed token, too large, SSE-C, locked."""

    code = "object-rejected"


class BodyDecodeError(ObjectRejectedError):
    """The body says it is gzip or UTF-16/32 but does not decode (the reason names the byte offset)."""

    code = "bad-encoding"


class ObjectOpaqueError(PermanentError):
    """The body could hold tokens the scanner cannot read (an archive, another compression, text
    without a byte-order mark). The object is reported ``opaque`` with the reason, never
    ``no-tokens``; it is not a failure to retry."""

    code = "opaque"

    @property
    def reason(self) -> str:
        return f"opaque: {self}"


# --- S3 ----------------------------------------------------------------------------------------
class StorageUnavailableError(RetryableError):
    code = "s3-unavailable"


class ObjectChangedError(RetryableError):
    """The object changed between our read and our write; the write was refused, nothing clobbered."""

    code = "object-changed"


class StorageDeniedError(PermanentError):
    code = "s3-denied"


class ObjectUnreadableError(PermanentError):
    """S3 will not give rewrap the object: archived (not restored), SSE-C, access denied. The object is
    reported ``unreadable`` with ``unreadable_reason`` (``archived``, ``sse-c``, ``access-denied``), not
    failed and not retried."""

    code = "unreadable"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.unreadable_reason = reason


# --- credentials -------------------------------------------------------------------------------
class CredentialsUnavailableError(RetryableError):
    code = "secret-unavailable"


class CredentialsInvalidError(PermanentError):
    code = "secret-invalid"


# --- NCP KMS -----------------------------------------------------------------------------------
class KmsThrottledError(RetryableError):
    code = "kms-throttled"


class KmsUnavailableError(RetryableError):
    """5xx, timeouts and transport failures."""

    code = "kms-unavailable"


class KmsInvalidReplyError(RetryableError):
    """A reply that fails validation (count, pattern, version). Nothing is written; a later
    attempt may get a sound reply."""

    code = "kms-invalid-reply"


class KmsAuthError(PermanentError):
    code = "kms-auth"


class KmsRejectedError(PermanentError):
    """KMS refused the request: bad ciphertext, disabled key or version, bad request."""

    code = "kms-rejected"


class KmsKeyDisabledError(KmsRejectedError):
    """The key is disabled, revoked or pending deletion: nothing of this key rotates until it is enabled."""

    code = "kms-key-disabled"


class KmsVersionDisabledError(KmsRejectedError):
    """The token's key version is disabled (a retirement, or by hand): it cannot be decrypted or re-wrapped
    until that version is enabled again, so no retry can help. Its reason names the fix:
    ``version-disabled: re-enable vN to rotate it (key …)``."""

    code = "version-disabled"


class KmsTokenExpiredError(KmsAuthError):
    """The ocapi access token for the key has expired; the secret needs a fresh one."""

    code = "kms-token-expired"


class KmsWrongRegionError(KmsRejectedError):
    """A region-isolated key (tag prefix ``kr-``/``jpn-``) called on another region's host."""

    code = "kms-wrong-region"


class KeyManagementUnavailableError(PermanentError):
    """The key's versions cannot be managed with these credentials: ``why`` is ``token-only`` (an ocapi
    token reaches no management call) or ``permission`` (NCP refused the call for the sub account's
    policy). The operator does it in the console instead."""

    code = "key-management-unavailable"

    def __init__(self, message: str, *, why: str) -> None:
        super().__init__(message)
        self.why = why


class PartialBatchError(RewrapError):
    """Some items of a KMS call failed and others did not. ``results`` holds, per input index, the
    item's result or the error that item failed with; callers that can use per-item outcomes catch
    this, others see one error that is retryable when any item's failure is."""

    code = "kms-partial"

    def __init__(self, results: list[object]) -> None:
        self.results = results
        self.errors = {i: r for i, r in enumerate(results) if isinstance(r, RewrapError)}
        first = next(iter(self.errors.values()))
        super().__init__(f"{len(self.errors)} of {len(results)} items failed; first: {first.reason}")
        self.retryable = any(error.retryable for error in self.errors.values())


class VerificationError(PermanentError):
    """A re-wrapped token does not decrypt to the same data as the original (REWRAP_VERIFY)."""

    code = "verification-failed"


class OutOfTimeError(RetryableError):
    code = "out-of-time"
