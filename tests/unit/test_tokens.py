"""Token scanning and splicing: boundaries, JSON escapes, malformed tokens, byte-exact rewrites."""

from __future__ import annotations

import base64
import itertools
import json
import random
import re

import pytest

from rewrap.core import tokens
from rewrap.core.chunks import chunk_by_size
from rewrap.core.tokens import (
    MAX_TOKEN_CHARS,
    TOKEN_RE,
    Found,
    scan,
    splice,
    token_match,
    token_version,
)
from tests.bodies import is_token

T1 = "ncpkms:v1:AAAAAA=="  # ends in "==" padding
T2 = "ncpkms:v2:BBBBBBB="  # ends in "=" padding
T3 = "ncpkms:v3:CCCCDDDD"  # no padding
SLASHY = "ncpkms:v4:ab/c+d/e/fg="  # holds slashes (escaped as \/ inside JSON)


def texts(data: bytes) -> list[str]:
    found, malformed = scan(data)
    assert malformed == []
    return [f.text for f in found]


def random_token(rng: random.Random) -> str:
    version = rng.choice([1, 2, 9, 10, 42, 999, rng.randint(1, 999_999_999)])
    return f"ncpkms:v{version}:{base64.b64encode(rng.randbytes(rng.randint(1, 60))).decode()}"


# --- where tokens sit ------------------------------------------------------------------------------
def test_token_is_the_whole_body() -> None:
    found, malformed = scan(T1.encode())

    assert found == [Found(T1, 1, 0, len(T1))]
    assert malformed == []


def test_token_at_start_and_at_end() -> None:
    data = f"{T1} middle {T3}".encode()

    found, _ = scan(data)

    assert [(f.text, f.start, f.end) for f in found] == [(T1, 0, len(T1)), (T3, len(data) - len(T3), len(data))]
    assert all(data[f.start : f.end] == f.text.encode() for f in found)


@pytest.mark.parametrize(
    ("first", "separator"),
    [(T1, ""), (T2, ""), (T3, ""), (T1, ","), (T3, ","), (T1, "\n"), (T3, "\r\n"), (T2, " ")],
    ids=["none-after-==", "none-after-=", "none-unpadded", "comma", "comma-unpadded", "newline", "crlf", "space"],
)
def test_adjacent_tokens_stay_apart(first: str, separator: str) -> None:
    data = f"{first}{separator}{SLASHY}{separator}{first}".encode()

    assert texts(data) == [first, SLASHY, first]


def test_version_and_offsets() -> None:
    found, _ = scan(b"xx" + T2.encode(), base_offset=100)

    assert (found[0].version, found[0].start, found[0].end) == (2, 102, 102 + len(T2))


def test_largest_version_and_longest_token_are_accepted() -> None:
    longest = "ncpkms:v1:" + "A" * (MAX_TOKEN_CHARS - len("ncpkms:v1:"))
    top = "ncpkms:v999999999:AAAA"

    assert len(longest) == MAX_TOKEN_CHARS
    assert texts(f"{longest} {top}".encode()) == [longest, top]
    assert token_version(top) == 999_999_999


# --- JSON-escaped slashes --------------------------------------------------------------------------
def test_json_escaped_slash_is_found_and_written_back_escaped() -> None:
    escaped = SLASHY.replace("/", "\\/")
    data = ('{"secret":"' + escaped + '","plain":"' + T1 + '"}').encode()
    new = "ncpkms:v5:x/y/zz+/"

    found, malformed = scan(data)
    out = splice(data, found, {SLASHY: new, T1: T3})

    assert malformed == []
    assert [(f.text, f.escaped) for f in found] == [(SLASHY, True), (T1, False)]
    assert data[found[0].start : found[0].end] == escaped.encode()
    assert out == ('{"secret":"' + new.replace("/", "\\/") + '","plain":"' + T3 + '"}').encode()
    assert json.loads(out) == {"secret": new, "plain": T3}


def test_json_string_escape_ends_a_token() -> None:
    data = b'{"a":"' + T3.encode() + b'\\n","b":"' + T1.encode() + b'\\""}'

    assert texts(data) == [T3, T1]


# --- malformed -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ncpkms:v1:AAAAA", "base64"),  # bad length
        ("ncpkms:v1:AAAAAA", "base64"),  # bad length
        ("ncpkms:v1:AAA==", "base64"),  # bad padding
        ("ncpkms:v1:AAAA==", "base64"),  # padding after a full group
        ("ncpkms:v1:A===", "base64"),
        ("ncpkms:v1:", "base64"),  # empty body
        ("ncpkms:v0:AAAA", "version"),
        ("ncpkms:v01:AAAA", "version"),
        ("ncpkms:v1234567890:AAAA", "version"),  # 10 digits
        ("ncpkms:v:AAAA", "version"),
    ],
)
def test_malformed_tokens_are_reported_not_found(text: str, reason: str) -> None:
    data = f"key={text}\n".encode()

    found, malformed = scan(data)

    assert found == []
    assert len(malformed) == 1
    assert malformed[0].start == 4
    assert reason in malformed[0].reason
    assert not is_token(text)


def test_oversized_token_is_malformed() -> None:
    text = "ncpkms:v1:" + "A" * (MAX_TOKEN_CHARS - len("ncpkms:v1:") + 4)

    found, malformed = scan(b"[" + text.encode() + b"]")

    assert TOKEN_RE.fullmatch(text) is not None  # the pattern alone would accept it
    assert found == []
    assert [m.start for m in malformed] == [1]
    assert "43,746" in malformed[0].reason
    assert not is_token(text)


def test_malformed_token_does_not_hide_its_neighbours() -> None:
    data = f"{T1},ncpkms:v0:AAAA,{T3}".encode()

    found, malformed = scan(data)

    assert [f.text for f in found] == [T1, T3]
    assert [m.start for m in malformed] == [len(T1) + 1]


@pytest.mark.parametrize(
    "data",
    [b"", b"plain text, no secrets", b"ncpkms is our prefix; ncpkms:vX:AAAA; NCPKMS:V1:AAAA", bytes(range(256))],
    ids=["empty", "text", "look-alikes", "all-bytes"],
)
def test_body_without_tokens(data: bytes) -> None:
    assert scan(data) == ([], [])
    assert splice(data, [], {}) == data


def test_token_version_rejects_non_tokens() -> None:
    assert token_version(T2) == 2
    with pytest.raises(ValueError, match="not an ncpkms token"):
        token_version("ncpkms:v0:AAAA")


# --- splice ----------------------------------------------------------------------------------------
def test_splice_preserves_non_utf8_bytes_exactly() -> None:
    before, between, after = b"\xff\xfe\x00latin-1 \xe9\xe8\r\n", b"\x80\x81 \xc3(", b"\xf0\x28\x8c\x28\x00\xff"
    data = before + T1.encode() + between + T3.encode() + after

    found, _ = scan(data)
    out = splice(data, found, {T1: SLASHY, T3: T2})

    assert out == before + SLASHY.encode() + between + T2.encode() + after


def test_splice_with_empty_replacements_returns_identical_bytes() -> None:
    data = b"\x00" + T1.encode() + b"\xff" + T2.encode()

    found, _ = scan(data)

    assert splice(data, found, {}) == data


def test_splice_replaces_only_the_mapped_tokens() -> None:
    data = f"{T1};{T2};{T1}".encode()

    found, _ = scan(data)

    assert splice(data, found, {T1: T3}) == f"{T3};{T2};{T3}".encode()


# --- chunk_by_size ---------------------------------------------------------------------------------
def test_chunk_by_size_respects_the_limit() -> None:
    rng = random.Random(1234)
    items = ["x" * rng.randint(1, 40) for _ in range(500)]

    chunks = list(chunk_by_size(items, 100))

    assert [item for chunk in chunks for item in chunk] == items
    assert all(chunk for chunk in chunks)
    assert all(sum(map(len, chunk)) <= 100 for chunk in chunks)
    # greedy: a chunk is closed only when the next item would not fit
    assert all(sum(map(len, a)) + len(b[0]) > 100 for a, b in itertools.pairwise(chunks))


def test_chunk_by_size_sends_an_oversized_item_alone() -> None:
    items = ["aa", "b" * 15, "cc", "dd", "e" * 10, "f"]

    assert list(chunk_by_size(items, 10)) == [["aa"], ["b" * 15], ["cc", "dd"], ["e" * 10], ["f"]]


def test_chunk_by_size_exact_fit_and_empty() -> None:
    assert list(chunk_by_size(["aaaa", "bbbb", "cc"], 10)) == [["aaaa", "bbbb", "cc"]]
    assert list(chunk_by_size([], 10)) == []


# --- property --------------------------------------------------------------------------------------
SEPARATORS = b" ,;:\"'\n\r\t\x00\xff\x80{}[]<>|!?#"


def test_scan_finds_exactly_the_inserted_tokens() -> None:
    rng = random.Random(20240611)
    for iteration in range(200):
        tokens: list[str] = []
        parts: list[bytes] = []
        escaped_tokens: list[bool] = []
        for _ in range(rng.randint(0, 8)):
            filler = rng.randbytes(rng.randint(0, 40)).replace(b"ncpkms", b"NCPKMS")
            token = random_token(rng)
            escape = "/" in token and rng.random() < 0.3
            raw = token.replace("/", "\\/") if escape else token
            # any filler may precede a token; the byte after it must end the token (not base64, '=' or '\')
            parts += [filler, raw.encode(), bytes([rng.choice(SEPARATORS)])]
            tokens.append(token)
            escaped_tokens.append(escape)
        parts.append(rng.randbytes(rng.randint(0, 40)).replace(b"ncpkms", b"NCPKMS"))
        data = b"".join(parts)

        found, malformed = scan(data)

        context = f"iteration {iteration}: {data!r}"
        assert malformed == [], context
        assert [f.text for f in found] == tokens, context
        assert [f.escaped for f in found] == escaped_tokens, context
        assert [f.version for f in found] == [token_version(t) for t in tokens], context
        assert splice(data, found, {t: t for t in tokens}) == data, context
        assert splice(data, found, {}) == data, context


# The scanner's first patterns, kept as references: the fast ones must agree with them exactly.
_REFERENCE_CANDIDATE_RE = re.compile(rb"ncpkms:v([0-9]*):(?:(?!ncpkms:v)(?:[A-Za-z0-9+/]|\\/))*={0,2}")
_REFERENCE_TOKEN_RE = re.compile(
    r"ncpkms:v([1-9][0-9]{0,8}):(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)"
)
# Pieces that put every boundary of a token next to every other: prefixes, versions, base64 runs of
# every length, padding, escaped slashes and other escapes, separators.
_PIECES = [b"ncpkms:v", b"ncpkms", b":v", b":", b"v", b"0", b"1", b"42", b"1234567890", b"A", b"ab", b"c+/", b"Zz9"]
_PIECES += [b"xyzw", b"=", b"==", b"===", b"\\/", b"\\", b"\\n", b"/", b"+", b",", b'"', b" ", b"\n", b"\xff", b"-"]


def _glued(rng: random.Random) -> bytes:
    return b"".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40)))


def test_token_match_agrees_with_the_strict_pattern() -> None:
    rng = random.Random(20261201)
    values = [T1, T2, T3, SLASHY, "ncpkms:v1:", "ncpkms:v1:=", "ncpkms:v1:A===", "ncpkms:v0:AAAA", "ncpkms:v1:AAAAA"]
    values += [random_token(rng) for _ in range(300)]
    values += [_glued(rng).decode("latin-1") for _ in range(3000)]
    values += [v[:cut] for v in values[:300] for cut in (len(v) - 1, len(v) - 2, 12)]
    for value in values:
        strict = _REFERENCE_TOKEN_RE.fullmatch(value)
        fast = token_match(value)
        assert (fast is None) == (strict is None), value
        if strict is not None and fast is not None:
            assert fast.group(1) == strict.group(1)
            assert token_version(value) == int(strict.group(1))
        assert is_token(value) == (strict is not None and len(value) <= MAX_TOKEN_CHARS)


def test_plain_scan_cuts_candidates_where_the_lookahead_pattern_did() -> None:
    """The plain scan finds every candidate the lookahead pattern found, at the same spans, and
    judges it the same way, including tokens glued to the next one or to a bare prefix."""
    rng = random.Random(20261202)
    for _ in range(3000):
        data = _glued(rng)
        if rng.random() < 0.5:
            data += random_token(rng).encode() + _glued(rng) + random_token(rng).encode()
        assert b"%" not in data and b"\\u" not in data  # the plain scan's input
        reference = list(_REFERENCE_CANDIDATE_RE.finditer(data))
        found, malformed = scan(data)
        spans = sorted([(f.start, f.end) for f in found] + [(m.start, -1) for m in malformed])
        assert [s for s, _ in spans] == [m.start() for m in reference], data
        for match in reference:
            text = match.group(0).replace(b"\\/", b"/").decode("ascii")
            valid = len(text) <= MAX_TOKEN_CHARS and _REFERENCE_TOKEN_RE.fullmatch(text) is not None
            hit = next((f for f in found if f.start == match.start()), None)
            assert (hit is not None) == valid, data
            if hit is not None:
                assert (hit.text, hit.end, hit.version) == (text, match.end(), int(match.group(1))), data


def _escaped_any(rng: random.Random, char: str) -> str:
    code = f"{ord(char):02x}"
    return rng.choice([char, f"\\u00{code}", f"\\u00{code.upper()}", f"%{code}", f"%{code.upper()}"])


@pytest.mark.parametrize("seed", range(20))
def test_prefix_finder_finds_what_the_one_pattern_for_every_form_finds(seed: int) -> None:
    # Given binary noise (where "%" and "\u" occur by chance) holding prefixes written in random mixes of forms,
    # some adjacent, some cut short
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(1, 40)):
        parts.append(rng.randbytes(rng.randint(0, 3000)))
        prefix = "".join(_escaped_any(rng, c) for c in "ncpkms:v")
        parts.append(prefix[: rng.randint(1, len(prefix))] if rng.random() < 0.2 else prefix)
        parts.append(rng.choice([b"", b"%6", b"\\u006", b"%6e", b"n"]))
    data = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
    whole = re.compile(b"".join(tokens._any_form(c) for c in "ncpkms:v"))

    # When the finder searches it, then it finds each prefix the single pattern finds, at the same span
    assert [m.span() for m in tokens.PrefixFinder(data)] == [m.span() for m in whole.finditer(data)]


def test_chunk_by_size_counts_items_too_and_measures_with_the_size_given() -> None:
    assert list(chunk_by_size(["a"] * 5, 100, most=2)) == [["a", "a"], ["a", "a"], ["a"]]
    assert list(chunk_by_size([3, 4, 5], 7, size=lambda n: n)) == [[3, 4], [5]]
