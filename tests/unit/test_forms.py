"""Escaped tokens and body forms: found in every writing and written back the same way (property
tests with fixed seeds; scanning in segments versus whole is in tests/integration/test_scan_properties.py)."""

from __future__ import annotations

import codecs
import gzip
import random

import pytest

from rewrap.core.forms import Encoder, encode_whole, open_text
from rewrap.core.tokens import scan, splice
from rewrap.errors import BodyDecodeError, ObjectOpaqueError
from tests.bodies import FORMS, decode_whole, json_u, pct, random_body

TOKEN = "ncpkms:v1:ab/c+d/e/f+="
NEW = "ncpkms:v7:Zz+/Yy/+Xx=="


@pytest.mark.parametrize("form", FORMS)
def test_each_writing_is_found_and_its_replacement_written_the_same_way(form: str) -> None:
    write = FORMS[form]
    data = f'{{"a":"{write(TOKEN)}","b":1}} tail'.encode()
    (found,), malformed = scan(data)
    assert malformed == [] and found.text == TOKEN and found.version == 1
    assert data[found.start : found.end] == write(TOKEN).encode()
    rotated = splice(data, [found], {TOKEN: NEW})
    assert rotated == f'{{"a":"{write(NEW)}","b":1}} tail'.encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"ncpkms:v1:abcdefgh\\u003", "incomplete escape at byte 20"),
        (b"ncpkms:v1:abcdefgh\\u00", "incomplete escape at byte 20"),
        (b"ncpkms%3Av1%3Aabcdefgh%3", "incomplete escape at byte 24"),
        (b"ncpkms%3Av1%3Aabcdefgh%", "incomplete escape at byte 24"),
        (b"ncpkms%3Av1%3Aabcdefgh%zz", "incomplete escape at byte 24"),
        (b"ncpkms%3Av0%3Aabcd", "version is not a number"),
        (b"ncpkms%3Av1%3Aab%2Bcd", "not padded standard base64"),
    ],
)
def test_a_candidate_cut_short_by_an_escape_is_malformed_never_a_shorter_token(data: bytes, reason: str) -> None:
    found, malformed = scan(b"x " + data)
    assert found == [] and len(malformed) == 1 and reason in malformed[0].reason


def test_escapes_that_decode_to_other_characters_end_a_token() -> None:
    data = b"t=ncpkms%3Av1%3AAAAA%20and ncpkms:v2:BBBB\\u0022 ncpkms:v3:CCCC\\n 100% done \\u0041"
    found, malformed = scan(data)
    assert [f.text for f in found] == ["ncpkms:v1:AAAA", "ncpkms:v2:BBBB", "ncpkms:v3:CCCC"] and malformed == []


def test_adjacent_tokens_in_mixed_writings_stay_apart() -> None:
    data = f"{TOKEN}{pct(TOKEN)}{json_u(TOKEN, 'n')}AAAA{TOKEN}".encode()
    found, malformed = scan(data)
    assert [f.text for f in found] == [TOKEN] * 4 and malformed == []
    assert splice(data, found, {TOKEN: NEW}) == f"{NEW}{pct(NEW)}{json_u(NEW, 'n')}AAAA{NEW}".encode()


def encodings(text: bytes, rng: random.Random) -> dict[str, tuple[str | None, bytes]]:
    wide = text.decode("utf-8", "surrogateescape").replace("\udcff", "\xff")
    half = len(text) // 2
    return {
        "plain": (None, text),
        "utf-16-le": (None, codecs.BOM_UTF16_LE + wide.encode("utf-16-le")),
        "utf-16-be": (None, codecs.BOM_UTF16_BE + wide.encode("utf-16-be")),
        "utf-32-le": (None, codecs.BOM_UTF32_LE + wide.encode("utf-32-le")),
        "utf-32-be": (None, codecs.BOM_UTF32_BE + wide.encode("utf-32-be")),
        "gzip": ("gzip", gzip.compress(text)),
        "gzip members": (None, gzip.compress(text[:half]) + gzip.compress(text[half:])),
        "gzip utf-16": (None, gzip.compress(codecs.BOM_UTF16_LE + wide.encode("utf-16-le"))),
    }


@pytest.mark.parametrize("seed", range(3))
def test_every_form_decodes_at_any_chunking_and_encodes_back_exactly(seed: int) -> None:
    rng = random.Random(seed)
    text = random_body(rng, 300).replace(b"\xff", b"~")  # wide forms hold text
    for name, (encoding, raw) in encodings(text, rng).items():
        chunk = rng.randint(1, 5000)
        form, decoded = open_text(encoding, (raw[i : i + chunk] for i in range(0, len(raw), chunk)))
        assert b"".join(decoded) == text, name
        # splicing the decoded content and encoding it back keeps every other byte
        found, _ = scan(text)
        rotated = splice(text, found, {t.text: NEW for t in found})
        out = Encoder(form)
        encoded = b"".join(out.feed(rotated[i : i + 777]) for i in range(0, len(rotated), 777)) + out.finish()
        assert encoded == encode_whole(form, rotated), name
        assert decode_whole(encoding, encoded)[1] == rotated, name
        if not form.gzip:
            assert encode_whole(form, text) == raw, name  # the BOM and every byte kept


@pytest.mark.parametrize(
    ("encoding", "data", "error"),
    [
        (None, b"PK\x03\x04", ObjectOpaqueError),
        ("gzip, br", b"\x1f\x8b", ObjectOpaqueError),
        ("compress", b"x", ObjectOpaqueError),
        (None, gzip.compress(b"PK\x03\x04 zipped", mtime=0), ObjectOpaqueError),
        (None, gzip.compress(gzip.compress(b"twice", mtime=0), mtime=0), ObjectOpaqueError),
        (None, b"\xfe\xff\xd8\x00\x00A", BodyDecodeError),
        (None, b"\xff\xfe\x00\x00\x00\xd8\x00\x00", BodyDecodeError),
    ],
)
def test_opaque_and_bad_bodies_are_told_apart(encoding: str | None, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_whole(encoding, data)


def test_a_body_that_only_looks_like_a_bom_stays_plain() -> None:
    data = b"\xff\xfe binary then ncpkms:v1:AAAA"
    form, text = decode_whole(None, data)
    assert form.plain and text == data
