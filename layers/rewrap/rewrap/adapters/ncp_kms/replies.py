"""Reading the items of NCP KMS replies: each crypto operation's check, and every item's outcome."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypeVar

from rewrap.core.tokens import known_version, token_match
from rewrap.errors import (
    KmsInvalidReplyError,
    KmsKeyDisabledError,
    KmsRejectedError,
    KmsWrongRegionError,
    PartialBatchError,
    RewrapError,
)

T = TypeVar("T")


def refuses_item(error: RewrapError) -> bool:
    """A refusal of one item's own (not of the key, the region or the credentials)."""
    return isinstance(error, KmsRejectedError) and not isinstance(error, KmsKeyDisabledError | KmsWrongRegionError)


def all_or_raise(results: list[T | RewrapError]) -> list[T]:
    """The results when every item succeeded; the error when one request-level error failed them all;
    otherwise a PartialBatchError with every item's outcome."""
    errors = [r for r in results if isinstance(r, RewrapError)]
    if not errors:
        return results  # type: ignore[return-value]  # every index was filled
    if len(errors) == len(results) and all(e is errors[0] for e in errors):
        raise errors[0]
    raise PartialBatchError(list(results))


def checked_re_encrypt(sent: list[str], replies: list[Any]) -> list[str]:
    validate_re_encrypt_reply(sent, replies)
    return replies


def checked_tokens(sent: list[str], replies: list[Any]) -> list[str]:
    if not all(isinstance(r, str) and token_match(r) for r in replies):
        raise KmsInvalidReplyError("encrypt reply holds an item that is not a token")
    return replies


def checked_plaintexts(sent: list[str], replies: list[Any]) -> list[bytes]:
    try:
        return [base64.b64decode(r, validate=True) for r in replies]
    except (TypeError, ValueError) as exc:
        raise KmsInvalidReplyError("decrypt reply is not base64") from exc


def validate_re_encrypt_reply(sent: Sequence[str], replies: Sequence[Any]) -> None:
    """Same count, every item a token, no version lower than the one sent."""
    if len(replies) != len(sent):
        raise KmsInvalidReplyError(f"reply holds {len(replies)} items for {len(sent)} sent")
    for old, new in zip(sent, replies, strict=True):
        new_match = token_match(new) if isinstance(new, str) else None
        if new_match is None:
            raise KmsInvalidReplyError("reply holds an item that is not an ncpkms token")
        if int(new_match.group(1)) < known_version(old):  # sent tokens were validated when found
            raise KmsInvalidReplyError("reply holds a token at a lower key version than sent")
