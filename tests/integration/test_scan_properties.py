"""The scanner at body scale: a body of thousands of tokens in every writing, scanned in segments at
any chunking, finds exactly what one scan of the whole finds (property tests with fixed seeds; each
body is a few MB, so they sit here rather than in the unit tier)."""

from __future__ import annotations

import base64
import random

import pytest

from rewrap.core.token_segments import token_safe_segments
from rewrap.core.tokens import scan
from tests.bodies import random_body


@pytest.mark.parametrize("seed", range(4))
def test_scanning_in_segments_equals_scanning_whole(seed: int) -> None:
    rng = random.Random(seed)
    body = random_body(rng, 9000)
    whole = scan(body)
    assert len(whole[0]) > 1000 and len(whole[1]) > 100
    target = rng.randint(20_000, 60_000)
    chunk = rng.randint(1, 70_000)
    segments = list(token_safe_segments((body[i : i + chunk] for i in range(0, len(body), chunk)), target))
    assert len(segments) > 3 and b"".join(s for _, s in segments) == body
    found = [t for offset, segment in segments for t in scan(segment, offset)[0]]
    malformed = [m for offset, segment in segments for m in scan(segment, offset)[1]]
    assert [(t.text, t.start, t.end) for t in found] == [(t.text, t.start, t.end) for t in whole[0]]
    assert [(m.start, m.reason) for m in malformed] == [(m.start, m.reason) for m in whole[1]]


def test_token_safe_segments_never_change_what_a_scan_finds() -> None:
    """Cutting a stream into segments (at any chunking) finds exactly the tokens and malformed runs of
    the whole body: tokens glued together, glued to a bare ``ncpkms:v``, JSON-escaped, or broken."""
    rnd = random.Random(20261129)
    for _ in range(12):
        parts: list[bytes] = []
        for _ in range(rnd.randint(2500, 5000)):
            raw = base64.b64encode(rnd.randbytes(rnd.choice([30, 31, 32, 45]))).decode()
            token = f"ncpkms:v{rnd.randint(1, 99)}:{raw}"
            choice = rnd.random()
            if choice < 0.15:
                token = token.replace("/", "\\/")
            elif choice < 0.25:
                token += "ncpkms:vX"  # a bare prefix right after the token
            elif choice < 0.3:
                token = token[:-1] + "!"  # broken
            parts.append(token.encode() + rnd.choice([b"", b",", b"\n", b'"', b"\xff"]))
        body = b"".join(parts)
        whole = scan(body)
        target = rnd.randint(200, 5000)
        chunk = rnd.randint(1, 7000)
        chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        segments = list(token_safe_segments(chunks, target))
        assert len(segments) > 5  # the body is long enough to be cut many times
        assert b"".join(segment for _, segment in segments) == body
        found = [t for offset, segment in segments for t in scan(segment, offset)[0]]
        malformed = [m for offset, segment in segments for m in scan(segment, offset)[1]]
        assert [(t.text, t.start, t.end) for t in found] == [(t.text, t.start, t.end) for t in whole[0]]
        assert [m.start for m in malformed] == [m.start for m in whole[1]]
