"""What the engine answers per object: a ``Status`` and an ``ObjectResult``, and its record.

``RESULT_FIELDS`` is the one list of a result record's fields, in order: ``ObjectResult.to_dict``
(the functions' answers, logs and JSON reports) and the CSV report's columns both follow it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rewrap.errors import ObjectOpaqueError, ObjectUnreadableError, RewrapError
from rewrap.ports import ObjectRef


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

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    def to_dict(self) -> dict[str, Any]:
        """The record: every field of ``RESULT_FIELDS``, optional ones only when they have a value."""
        out: dict[str, Any] = {}
        for name, value_of, always in _RECORD:
            value = value_of(self)
            if always or value is not None:
                out[name] = value
        return out


def _reason(result: ObjectResult) -> str | None:
    return result.error.reason if result.error is not None else result.reason or None


def _error_class(result: ObjectResult) -> str | None:
    if result.error is None:
        return None
    return "retryable" if result.error.retryable else "permanent"


# A result record's fields in order: name, its value, and whether it is there even when None.
_RECORD: tuple[tuple[str, Callable[[ObjectResult], Any], bool], ...] = (
    ("bucket", lambda r: r.ref.bucket, True),
    ("key", lambda r: r.ref.key, True),
    ("versionId", lambda r: r.ref.version_id, True),
    ("status", lambda r: str(r.status), True),
    ("tokens", lambda r: r.tokens, True),
    ("rotatedTokens", lambda r: r.rotated_tokens, True),
    ("fromVersions", lambda r: list(r.old_versions), True),
    ("toVersion", lambda r: r.new_version, True),
    ("newVersionId", lambda r: r.new_version_id or None, False),
    ("errorClass", _error_class, False),
    ("reason", _reason, False),
)
RESULT_FIELDS = tuple(name for name, _, _ in _RECORD)


def unseen(ref: ObjectRef, error: RewrapError) -> ObjectResult | None:
    """The result of an object that could not be looked at, or None for a real failure."""
    if isinstance(error, ObjectOpaqueError):
        return ObjectResult(ref, Status.OPAQUE, reason=error.reason)
    if isinstance(error, ObjectUnreadableError):
        return ObjectResult(ref, Status.UNREADABLE, reason=error.unreadable_reason)
    return None
