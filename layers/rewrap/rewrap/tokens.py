"""Finding NCP KMS ciphertext tokens (``ncpkms:v<version>:<base64>``) and splicing in new ones.

Bodies are scanned as bytes, so non-UTF-8 content around tokens survives untouched. A token inside
JSON may carry escaped slashes (``\\/``); it is recognised, and its replacement is escaped the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)"
TOKEN_RE = re.compile(rf"ncpkms:v([1-9][0-9]{{0,8}}):{_B64}")
# The largest ciphertext NCP accepts (43,746 characters, AES-256 with 32 KiB of plaintext).
MAX_TOKEN_CHARS = 43_746

# Anything that starts like a token; it is then checked strictly, so a broken one is reported
# instead of being half-matched.
# A body ends at its padding or where the next token begins, so adjacent tokens stay apart.
_CANDIDATE_RE = re.compile(rb"ncpkms:v([0-9]*):(?:(?!ncpkms:v)(?:[A-Za-z0-9+/]|\\/))*={0,2}")
_PREFIX_RE = re.compile(rb"ncpkms:v")
_ESCAPED_SLASH = b"\\/"


@dataclass(frozen=True, slots=True)
class Found:
    """A token in a body: ``text`` is the canonical token, ``start:end`` its raw span."""

    text: str
    version: int
    start: int
    end: int
    escaped: bool = False

    def encode_replacement(self, new_token: str) -> bytes:
        raw = new_token.encode("ascii")
        return raw.replace(b"/", _ESCAPED_SLASH) if self.escaped else raw


@dataclass(frozen=True, slots=True)
class Malformed:
    """Something that starts like a token but is not one (broken base64, absurd version, too long)."""

    start: int
    reason: str


def is_token(value: str) -> bool:
    return len(value) <= MAX_TOKEN_CHARS and TOKEN_RE.fullmatch(value) is not None


def token_version(token: str) -> int:
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        raise ValueError("not an ncpkms token")
    return int(match.group(1))


def known_version(token: str) -> int:
    """The version of a token that has already been validated (no second regex on the hot path)."""
    return int(token[8 : token.index(":", 8)])  # after "ncpkms:v"


def _check(candidate: str) -> str | None:
    """Why ``candidate`` is not a valid token, or None when it is one."""
    if len(candidate) > MAX_TOKEN_CHARS:
        return "token longer than NCP's 43,746-character limit"
    match = TOKEN_RE.fullmatch(candidate)
    if match is not None:
        return None
    version = candidate[len("ncpkms:v") :].split(":", 1)[0]
    if not re.fullmatch(r"[1-9][0-9]{0,8}", version):
        return "token version is not a number from 1 to 999999999"
    return "token body is not padded standard base64"


def scan(data: bytes, base_offset: int = 0) -> tuple[list[Found], list[Malformed]]:
    """Every token and every malformed token-like run in ``data``, in order of appearance."""
    found: list[Found] = []
    malformed: list[Malformed] = []
    for match in _CANDIDATE_RE.finditer(data):
        raw = match.group(0)
        escaped = _ESCAPED_SLASH in raw
        text = (raw.replace(_ESCAPED_SLASH, b"/") if escaped else raw).decode("ascii")
        start = base_offset + match.start()
        problem = _check(text)
        if problem is None:
            found.append(Found(text, int(match.group(1)), start, base_offset + match.end(), escaped))
        else:
            malformed.append(Malformed(start, problem))
    return found, malformed


def splice(data: bytes, found: Iterable[Found], replacements: Mapping[str, str]) -> bytes:
    """``data`` with each found token whose text is in ``replacements`` swapped for its new token."""
    parts: list[bytes] = []
    position = 0
    for token in found:
        new_token = replacements.get(token.text)
        if new_token is None:
            continue
        parts.append(data[position : token.start])
        parts.append(token.encode_replacement(new_token))
        position = token.end
    if not parts:
        return data
    parts.append(data[position:])
    return b"".join(parts)


def chunk_by_size(items: Sequence[str], limit: int) -> Iterator[list[str]]:
    """Consecutive groups whose combined length stays within ``limit`` (an oversized item goes alone)."""
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + len(item) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item)
    if chunk:
        yield chunk


# A token, with every slash escaped, is at most this long; a cut this far from a candidate is safe.
_MAX_RAW_TOKEN = 2 * MAX_TOKEN_CHARS


def token_safe_segments(chunks: Iterable[bytes], target: int) -> Iterator[tuple[int, bytes]]:
    """Regroup a byte stream into (offset, segment) pieces of about ``target`` bytes, never cutting
    through anything that looks like a token, so each piece can be scanned and spliced on its own.

    Every piece but the last is at least ``target - 2 * MAX_TOKEN_CHARS`` bytes long."""
    buffer = bytearray()
    offset = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= target + _MAX_RAW_TOKEN:
            cut = _safe_cut(buffer, target)
            yield offset, bytes(buffer[:cut])
            del buffer[:cut]
            offset += cut
    if buffer:
        yield offset, bytes(buffer)


def _safe_cut(buffer: bytearray, target: int) -> int:
    """``target``, or the start of the token-like run (or bare ``ncpkms:v`` prefix) that spans it.

    A bare prefix matters too: it ends the token before it, so cutting through it would let that
    token run on into the cut-off letters."""
    window_start = max(0, target - _MAX_RAW_TOKEN)
    window = bytes(buffer[window_start : target + _MAX_RAW_TOKEN])
    for pattern in (_CANDIDATE_RE, _PREFIX_RE):
        for match in pattern.finditer(window):
            start, end = window_start + match.start(), window_start + match.end()
            if start < target < end:
                return start if start > 0 else end
    return target
