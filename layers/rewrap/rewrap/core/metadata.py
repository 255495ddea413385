"""The user-metadata names rewrap reads and writes, and the one envelope detector.

An object is an envelope when a user-metadata value holds an ncpkms token (a whole value or inside
one, ``alg=A256GCM;dek=ncpkms:v1:…``). The control names below steer rewrap and are never scanned:
the per-object key tag and context, and the stamps rewrap writes on rotated text objects. The
engine and the census both decide through :func:`scan_metadata`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import NamedTuple

from rewrap.core.tokens import Found, Malformed, scan
from rewrap.errors import ObjectRejectedError

KEY_TAG_METADATA = "ncpkms-key-tag"
CONTEXT_METADATA = "ncpkms-context"
# Written on rotated text objects so a re-trigger by our own write is answered without scanning (or, for
# a body larger than one read, reading) the body: its lowest key version, and the full-object checksum of
# the body rewrap wrote, which S3 reports on every read of that body and of no other.
STAMP_VERSION_METADATA = "rewrap-min-version"
STAMP_CHECKSUM_METADATA = "rewrap-body-checksum"
STAMP_SIZE_METADATA = "rewrap-body-size"  # what rewrap stamped before the checksum: never trusted, dropped on write
STAMP_METADATA = frozenset({STAMP_VERSION_METADATA, STAMP_CHECKSUM_METADATA, STAMP_SIZE_METADATA})
CONTROL_METADATA = frozenset({KEY_TAG_METADATA, CONTEXT_METADATA, *STAMP_METADATA})
# NCP's limit on the context of convergent-encryption keys, decoded.
MAX_CONTEXT_BYTES = 50


class MetadataScan(NamedTuple):
    """The tokens inside user-metadata values (per name) and the malformed ones."""

    tokens: dict[str, list[Found]]
    malformed: list[tuple[str, Malformed]]

    @property
    def envelope(self) -> bool:
        """Whether the object is an envelope: its metadata holds tokens, well-formed or not."""
        return bool(self.tokens or self.malformed)


def scan_metadata(metadata: Mapping[str, str]) -> MetadataScan:
    """Tokens anywhere inside user-metadata values, control values left out."""
    found: dict[str, list[Found]] = {}
    malformed: list[tuple[str, Malformed]] = []
    for name, value in metadata.items():
        if name in CONTROL_METADATA:
            continue
        tokens, bad = scan(value.encode("utf-8"))
        if tokens:
            found[name] = tokens
        malformed.extend((name, m) for m in bad)
    return MetadataScan(found, malformed)


def context_of(metadata: Mapping[str, str]) -> str | None:
    """The object's KMS context (base64, as NCP takes it), or None; a bad one is rejected."""
    value = metadata.get(CONTEXT_METADATA)
    if not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ObjectRejectedError(f"{CONTEXT_METADATA} metadata is not base64", code="bad-context") from exc
    if len(decoded) > MAX_CONTEXT_BYTES:
        raise ObjectRejectedError(
            f"{CONTEXT_METADATA} is longer than NCP's {MAX_CONTEXT_BYTES}-byte limit", code="bad-context"
        )
    return value


def stamped_version(metadata: Mapping[str, str], checksum: str | None) -> int | None:
    """The lowest key version rewrap stamped on the object, only while the stamp provably describes the
    body that is there: the checksum the store reports for it (``checksum``) is the one rewrap wrote. A
    stamp carried along by a writer that changed the body (metadata kept, as SDK "update" helpers do)
    does not match and is ignored. None: no stamp, or not this body's."""
    stamp, stamped = metadata.get(STAMP_VERSION_METADATA), metadata.get(STAMP_CHECKSUM_METADATA)
    if not (stamp and stamp.isdigit() and checksum and stamped == checksum):
        return None
    return int(stamp)


def stamps(version: int, checksum: str) -> dict[str, str]:
    """The stamps of a rotated text object: its lowest key version and the checksum of its new body."""
    return {STAMP_VERSION_METADATA: str(version), STAMP_CHECKSUM_METADATA: checksum}
