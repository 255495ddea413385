"""What the engine answers per object: a ``Status`` and an ``ObjectResult``, and its record.

``RESULT_RECORD`` is the one list of a result record's fields, in order: ``ObjectResult.to_dict``
(the functions' answers, logs and JSON reports) and the CSV report's columns both follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rewrap.core.ports import ObjectRef
from rewrap.core.records import Field, columns, record
from rewrap.errors import ObjectOpaqueError, ObjectUnreadableError, RewrapError


class Status(StrEnum):
    ROTATED = "rotated"
    WOULD_ROTATE = "would-rotate"
    CURRENT = "current"
    NO_TOKENS = "no-tokens"
    MISSING = "missing"
    OPAQUE = "opaque"  # could hold tokens the scanner cannot read (an archive, another compression)
    UNREADABLE = "unreadable"  # S3 will not give us the body (archived, SSE-C, access denied)
    FAILED = "failed"


# Results that say "not looked at", with a reason, without being failures to retry.
UNSEEN = (Status.OPAQUE, Status.UNREADABLE)


@dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    status: Status
    tokens: int = 0
    rotated_tokens: int = 0
    old_versions: tuple[int, ...] = ()
    new_version: int | None = None
    new_version_id: str | None = None
    error: RewrapError | None = None
    reason: str | None = None  # why an object is opaque ("opaque: zip archive") or unreadable ("archived")
    key_tag: str = ""  # the key its tokens were found under (a rotation run's partial counts per key)

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    def to_dict(self) -> dict[str, Any]:
        return record(self, RESULT_RECORD)


def _reason(result: ObjectResult) -> str | None:
    return result.error.reason if result.error is not None else result.reason or None


def _error_class(result: ObjectResult) -> str | None:
    if result.error is None:
        return None
    return "retryable" if result.error.retryable else "permanent"


# A result record's fields, in order: ``ObjectResult.to_dict`` and the CSV report's columns.
RESULT_RECORD: tuple[Field[ObjectResult], ...] = (
    Field("bucket", lambda r: r.ref.bucket),
    Field("key", lambda r: r.ref.key),
    Field("versionId", lambda r: r.ref.version_id),
    Field("status", lambda r: str(r.status)),
    Field("tokens", lambda r: r.tokens),
    Field("rotatedTokens", lambda r: r.rotated_tokens),
    Field("fromVersions", lambda r: list(r.old_versions)),
    Field("toVersion", lambda r: r.new_version),
    Field("newVersionId", lambda r: r.new_version_id or None, optional=True),
    Field("errorClass", _error_class, optional=True),
    Field("reason", _reason, optional=True),
)
RESULT_FIELDS = columns(RESULT_RECORD)


def unseen(ref: ObjectRef, error: RewrapError) -> ObjectResult | None:
    """The result of an object that could not be looked at, or None for a real failure."""
    if isinstance(error, ObjectOpaqueError):
        return ObjectResult(ref, Status.OPAQUE, reason=error.reason)
    if isinstance(error, ObjectUnreadableError):
        return ObjectResult(ref, Status.UNREADABLE, reason=error.unreadable_reason)
    return None
