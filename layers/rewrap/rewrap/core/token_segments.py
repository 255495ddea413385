"""Cutting a byte stream into token-safe segments: pieces that can each be scanned and spliced on
their own, because no cut goes through anything that looks like a token (``rewrap.core.tokens``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rewrap.core.tokens import MAX_TOKEN_CHARS, PrefixFinder, may_hold_escaped, plain_candidates, read_candidate

_PREFIX_RE = re.compile(rb"ncpkms:v")

# A token, with every slash escaped, is at most this long; a cut this far from a candidate is safe.
# Where escapes may occur, a token with every character \\u-escaped (and an escape after it) is.
_MAX_RAW_TOKEN = 2 * MAX_TOKEN_CHARS
_MAX_RAW_ESCAPED_TOKEN = 6 * (MAX_TOKEN_CHARS + 2)


def token_safe_segments(chunks: Iterable[bytes], target: int) -> Iterator[tuple[int, bytes]]:
    """Regroup a byte stream into (offset, segment) pieces of about ``target`` bytes, never cutting
    through anything that looks like a token, so each piece can be scanned and spliced on its own.

    Every piece but the last is at least ``target - 2 * MAX_TOKEN_CHARS`` bytes long (``6 *`` where
    the stream holds escapes)."""
    buffer = bytearray()
    offset = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= target + _MAX_RAW_TOKEN and len(buffer) >= target + (reach := _reach(buffer, target)):
            cut = _safe_cut(buffer, target, reach)
            yield offset, bytes(buffer[:cut])
            del buffer[:cut]
            offset += cut
    if buffer:
        yield offset, bytes(buffer)


def _reach(buffer: bytearray, target: int) -> int:
    """How far around ``target`` a token may reach: farther where escapes occur near it."""
    start = max(0, target - _MAX_RAW_ESCAPED_TOKEN)
    escaped = buffer.find(b"%", start) >= 0 or buffer.find(b"\\u", start) >= 0
    return _MAX_RAW_ESCAPED_TOKEN if escaped else _MAX_RAW_TOKEN


def _safe_cut(buffer: bytearray, target: int, reach: int) -> int:
    """``target``, or the start of the token-like run (or bare prefix) that spans it.

    A bare prefix matters too: it ends the token before it, so cutting through it would let that
    token run on into the cut-off letters. An escape right after a token is part of its run, so a
    cut never turns "%20" into an incomplete "%2"."""
    window_start = max(0, target - reach)
    window = bytes(buffer[window_start : target + reach])
    for start, end in _runs(window, target - window_start):
        start, end = window_start + start, window_start + end
        if start < target < end:
            return start if start > 0 else end
    return target


def _runs(window: bytes, before: int) -> Iterator[tuple[int, int]]:
    """Spans of token-like runs starting before ``before`` in ``window``: candidates (with an escape
    right after them) and prefixes."""
    if may_hold_escaped(window):
        for match in PrefixFinder(window):
            if match.start() >= before:
                return
            candidate = read_candidate(window, match.start())
            end = match.end() if candidate is None else candidate[1]
            yield match.start(), min(len(window), max(match.end(), end) + 6)
        return
    yield from plain_candidates(window, stop=before)
    for match in _PREFIX_RE.finditer(window):
        if match.start() >= before:
            break
        yield match.start(), match.end()
