"""Finding NCP KMS ciphertext tokens (``ncpkms:v<version>:<base64>``) and splicing in new ones.

Bodies are scanned as bytes, so non-UTF-8 content around tokens survives untouched. A token may be
written with JSON escapes (``\\/``, ``\\u002b``, any character as ``\\uXXXX``) or %-encoded as in URLs,
form bodies and logs (``ncpkms%3Av1%3A…%2B…%3D``); it is recognised, and its replacement is written
back in the same form. A candidate cut short by an incomplete escape is reported malformed, never
sent to KMS as a shorter token. A stream is cut into pieces that each scan alone by
``rewrap.core.token_segments``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)"
TOKEN_RE = re.compile(rf"ncpkms:v([1-9][0-9]{{0,8}}):{_B64}")
# The largest ciphertext NCP accepts (43,746 characters, AES-256 with 32 KiB of plaintext).
MAX_TOKEN_CHARS = 43_746

# The same shape, checked without the backtracking group: a body of base64 characters (at least
# one) and at most two "=", of a length divisible by 4, is exactly what TOKEN_RE accepts.
_SHAPE_RE = re.compile(r"ncpkms:v([1-9][0-9]{0,8}):[A-Za-z0-9+/]+={0,2}")
_SHAPE_BYTES_RE = re.compile(_SHAPE_RE.pattern.encode())

# Anything that starts like a token; it is then checked strictly, so a broken one is reported
# instead of being half-matched. Runs of base64 characters (possessive: no backtracking, the scan's
# hot loop) and JSON-escaped slashes, then the padding.
_CANDIDATE_RE = re.compile(rb"ncpkms:v([0-9]*):(?:[A-Za-z0-9+/]++|\\/)*+={0,2}")
_ESCAPED_SLASH = b"\\/"
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_TOKEN_CHARS = _B64_CHARS | {"=", ":"}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _any_form(char: str) -> bytes:
    """A regex for ``char`` written plainly, as a JSON ``\\uXXXX`` escape or %-encoded (hex any case)."""
    hexa = f"{ord(char):02x}"
    either = "".join(f"[{h}{h.upper()}]" if h.isalpha() else h for h in hexa)
    return f"(?:{re.escape(char)}|\\\\u00{either}|%{either})".encode()


# The prefix in any mix of plain, JSON-escaped and %-encoded characters (JSON writers such as Gson
# and .NET escape "=" and "+", URLs and form bodies %-encode ":" "/" "+" "="). Bodies holding no
# "\\u" and no "%" cannot hold such a form, and keep the plain scan's speed.
_ESCAPED_PREFIX_RE = re.compile(b"".join(_any_form(c) for c in "ncpkms:v"))
# The same with "ncpkms" written plainly: a literal start keeps the search fast. Exact where no
# letter of the prefix can be escaped (no \\u006x, \\u007x, %6x, %7x in the data).
_ESCAPED_SEPARATORS_RE = re.compile(b"ncpkms" + _any_form(":") + _any_form("v"))
# The full pattern, split by how its "n" is written: each part starts with a literal run, which the
# regex engine finds at C speed, where the whole pattern tests three alternatives at every byte
# (four times slower on binary bodies, where "%" and "\\u" occur by chance).
_ESCAPED_PREFIX_PARTS = tuple(
    re.compile(first + b"".join(_any_form(c) for c in "cpkms:v")) for first in (b"n", rb"\\u006[eE]", rb"%6[eE]")
)
_LETTER_ESCAPES = (b"%6", b"%7", b"\\u006", b"\\u007")
_PREFIX = "ncpkms:v"
_PREFIX_BYTES = b"ncpkms:v"


@dataclass(frozen=True, slots=True)
class Style:
    """How an escaped token was written: the raw form of each escaped character, and whether it sat
    in %-encoded text (where a literal "+" may read as a space, so unknown specials are encoded)."""

    forms: tuple[tuple[str, bytes], ...]
    percent: bool
    upper: bool
    everything: bool = False  # every character was escaped: escape every character of the new one

    def encode(self, token: str) -> bytes:
        forms = dict(self.forms)
        out = []
        for char in token:
            raw = forms.get(char)
            if raw is None and (self.everything or (self.percent and char in "+/=:")):
                digits = f"{ord(char):02X}" if self.upper else f"{ord(char):02x}"
                raw = (f"%{digits}" if self.percent else f"\\u00{digits}").encode()
            out.append(raw if raw is not None else char.encode())
        return b"".join(out)


class Found(NamedTuple):
    """A token in a body: ``text`` is the canonical token, ``start:end`` its raw span, ``style`` how
    it was escaped (None: plain bytes, or only JSON-escaped slashes when ``slashes``). A named tuple:
    a scan makes one per token, and a frozen dataclass takes several times longer to build."""

    text: str
    version: int
    start: int
    end: int
    slashes: bool = False
    style: Style | None = None

    @property
    def escaped(self) -> bool:
        """Written with JSON-escaped slashes."""
        return self.slashes or (self.style is not None and dict(self.style.forms).get("/") == _ESCAPED_SLASH)

    def encode_replacement(self, new_token: str) -> bytes:
        if self.style is not None:
            return self.style.encode(new_token)
        raw = new_token.encode("ascii")
        return raw.replace(b"/", _ESCAPED_SLASH) if self.slashes else raw


@dataclass(frozen=True, slots=True)
class Malformed:
    """Something that starts like a token but is not one (broken base64, absurd version, too long,
    or cut short by an incomplete escape)."""

    start: int
    reason: str


def token_match(value: str) -> re.Match[str] | None:
    """``TOKEN_RE.fullmatch(value)``, a few times faster (group 1 is the version)."""
    match = _SHAPE_RE.fullmatch(value)
    if match is None or (len(value) - match.end(1) - 1) % 4:  # the body after "ncpkms:v<version>:"
        return None
    return match


def token_version(token: str) -> int:
    match = token_match(token)
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
    if token_match(candidate) is not None:
        return None
    version = candidate[len("ncpkms:v") :].split(":", 1)[0]
    if not re.fullmatch(r"[1-9][0-9]{0,8}", version):
        return "token version is not a number from 1 to 999999999"
    return "token body is not padded standard base64"


def may_hold_escaped(data: bytes | bytearray) -> bool:
    """Whether ``data`` could hold a JSON-\\u-escaped or %-encoded token (else the plain scan is exact)."""
    return b"%" in data or b"\\u" in data


def scan(data: bytes, base_offset: int = 0) -> tuple[list[Found], list[Malformed]]:
    """Every token and every malformed token-like run in ``data``, in order of appearance."""
    if may_hold_escaped(data):
        return _scan_escaped(data, base_offset)
    found: list[Found] = []
    malformed: list[Malformed] = []
    # The hot loop of every scan, inlined: a token written plainly (the common case) is checked in
    # place; escaped slashes, broken or oversized candidates take the general steps.
    shape = _SHAPE_BYTES_RE.fullmatch
    position = 0
    while True:
        for match in _CANDIDATE_RE.finditer(data, position):
            begin, end = match.start(), _plain_candidate_end(data, match)
            plain = shape(data, begin, end)
            if plain is not None and not (end - plain.end(1) - 1) % 4 and end - begin <= MAX_TOKEN_CHARS:
                version = int(plain.group(1))
                found.append(Found(data[begin:end].decode("ascii"), version, base_offset + begin, base_offset + end))
            else:
                _take_plain(data, begin, end, base_offset, found, malformed)
            if end != match.end():  # the next token begins inside this match: search again from there
                position = end
                break
        else:
            return found, malformed


def _plain_candidate_end(data: bytes, match: re.Match[bytes]) -> int:
    """Where the candidate ``match`` ends: a body ends at its padding or where the next token begins,
    so adjacent tokens stay apart. A run cannot hold ":", so a next "ncpkms:v" can only start in the
    run's last six letters."""
    end = match.end()
    return end - 6 if data.startswith(_PREFIX_BYTES, end - 6) else end


def plain_candidates(data: bytes, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int]]:
    """The (start, end) of each candidate written plainly that begins before ``stop``, in order."""
    search = _CANDIDATE_RE.search
    position = start
    while (match := search(data, position)) is not None and (stop is None or match.start() < stop):
        position = _plain_candidate_end(data, match)
        yield match.start(), position


def _take_plain(
    data: bytes, begin: int, end: int, base_offset: int, found: list[Found], malformed: list[Malformed]
) -> None:
    """A candidate written plainly (escaped slashes at most): a token, or a malformed one."""
    raw = data[begin:end]
    escaped = _ESCAPED_SLASH in raw
    text = (raw.replace(_ESCAPED_SLASH, b"/") if escaped else raw).decode("ascii")
    start = base_offset + begin
    problem = _check(text)
    if problem is None:
        found.append(Found(text, known_version(text), start, base_offset + end, escaped))
    else:
        malformed.append(Malformed(start, problem))


def _scan_escaped(data: bytes, base_offset: int) -> tuple[list[Found], list[Malformed]]:
    found: list[Found] = []
    malformed: list[Malformed] = []
    position = 0
    prefixes = PrefixFinder(data)
    while True:
        match = prefixes.search(position)
        if match is None:
            return found, malformed
        plain = _CANDIDATE_RE.match(data, match.start())
        plain_end = _plain_candidate_end(data, plain) if plain is not None else 0
        if plain is not None and data[plain_end : plain_end + 1] not in (b"\\", b"%"):
            raw = data[match.start() : plain_end]
            if b"%" not in raw and b"\\u" not in raw:  # written plainly: the plain scan's steps
                _take_plain(data, match.start(), plain_end, base_offset, found, malformed)
                position = plain_end
                continue
        candidate = read_candidate(data, match.start())
        if candidate is None:  # no ":" after the version: not token-like (as in the plain scan)
            position = match.end()
            continue
        text, end, units, cut_short = candidate
        start = base_offset + match.start()
        problem = _check(text)
        if problem is None and cut_short is not None:
            problem = f"token cut short by an incomplete escape at byte {base_offset + cut_short}"
        if problem is not None:
            malformed.append(Malformed(start, problem))
        else:
            found.append(Found(text, int(text[8 : text.index(":", 8)]), start, base_offset + end, *_style(units)))
        position = end


# One character of a candidate: a plain token character, an escaped slash, a \\uXXXX escape or %XX.
_Unit = tuple[str, bytes]


def _next_unit(data: bytes, i: int) -> tuple[_Unit | None, bool]:
    """The character at ``i`` and its raw bytes; (None, True) for an incomplete escape there."""
    byte = data[i]
    if byte == 0x5C:  # backslash
        if data[i + 1 : i + 2] == b"/":
            return ("/", _ESCAPED_SLASH), False
        if data[i + 1 : i + 2] != b"u":
            return None, False  # another JSON escape (\\n, \\"): ends the token
        digits = data[i + 2 : i + 6]
        if len(digits) < 4 or not all(d in _HEX for d in digits):
            return None, True
        return (chr(int(digits, 16)), data[i : i + 6]), False
    if byte == 0x25:  # percent
        digits = data[i + 1 : i + 3]
        if len(digits) < 2 or not all(d in _HEX for d in digits):
            return None, True
        return (chr(int(digits, 16)), data[i : i + 3]), False
    return (chr(byte), data[i : i + 1]), False


def read_candidate(data: bytes, start: int) -> tuple[str, int, list[_Unit], int | None] | None:
    """Decode a candidate at ``start`` (its prefix matched): its text, raw end, units, and the offset
    of an incomplete escape right after it (a token cut short there must never reach KMS)."""
    units: list[_Unit] = []
    i = start
    phase = "prefix"  # prefix → version → body → padding
    pads = 0
    cut_short: int | None = None
    limit = len(data)
    while i < limit and len(units) <= MAX_TOKEN_CHARS:
        unit, incomplete = _next_unit(data, i)
        if unit is None:
            if incomplete and phase in ("body", "padding"):
                cut_short = i
            break
        char = unit[0]
        if phase == "prefix" and len(units) == len(_PREFIX):
            phase = "version"
        if phase == "version":
            if char == ":":
                phase = "body"
                units.append(unit)
                i += len(unit[1])
                continue
            if not char.isdigit() or not char.isascii():
                return None
        elif phase == "body":
            if char == "=":
                phase = "padding"
            elif char not in _B64_CHARS:
                break
            elif char == "n" and _starts_prefix(data, i):
                break  # the next token begins
        if phase == "padding":
            if char != "=" or pads == 2:
                break
            pads += 1
        units.append(unit)
        i += len(unit[1])
    if phase in ("prefix", "version"):
        return None
    return "".join(c for c, _ in units), i, units, cut_short


class PrefixFinder:
    """Each "ncpkms:v" in ``data`` in any form, in order. Each part's next match is kept until the
    search passes it, so the parts together read the data once however many tokens it holds."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        letters = any(e in data for e in _LETTER_ESCAPES)
        self._parts = _ESCAPED_PREFIX_PARTS if letters else (_ESCAPED_SEPARATORS_RE,)
        self._next: list[re.Match[bytes] | None] = [None] * len(self._parts)
        self._exhausted = [False] * len(self._parts)

    def search(self, position: int) -> re.Match[bytes] | None:
        """The first prefix starting at or after ``position``."""
        first = None
        for i, part in enumerate(self._parts):
            if self._exhausted[i]:
                continue
            match = self._next[i]
            if match is None or match.start() < position:
                match = self._next[i] = part.search(self._data, position)
                self._exhausted[i] = match is None
            if match is not None and (first is None or match.start() < first.start()):
                first = match
        return first

    def __iter__(self) -> Iterator[re.Match[bytes]]:
        position = 0
        while (match := self.search(position)) is not None:
            yield match
            position = match.end()


def _starts_prefix(data: bytes, i: int) -> bool:
    match = _ESCAPED_PREFIX_RE.match(data, i)
    return match is not None


def _style(units: list[_Unit]) -> tuple[bool, Style | None]:
    forms: dict[str, bytes] = {}
    for char, raw in units:
        if len(raw) > 1:
            forms.setdefault(char, raw)
    if not forms:
        return False, None
    if set(forms.values()) == {_ESCAPED_SLASH}:
        return True, None
    percent = any(raw.startswith(b"%") for raw in forms.values())
    hex_digits = b"".join(raw[2:] if raw.startswith(b"\\u") else raw[1:] for raw in forms.values() if len(raw) > 2)
    upper = any(c in b"ABCDEF" for c in hex_digits) or not any(c in b"abcdef" for c in hex_digits)
    everything = all(len(raw) > 1 for _, raw in units)
    return False, Style(tuple(sorted(forms.items())), percent, upper, everything)


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
