"""Token writings, random adversarial bodies and the oracles the tests judge bodies with."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

from rewrap.core.forms import Form, open_text
from rewrap.core.tokens import MAX_TOKEN_CHARS, token_match


def is_token(value: str) -> bool:
    """The whole of ``value`` is one well-formed ncpkms token."""
    return len(value) <= MAX_TOKEN_CHARS and token_match(value) is not None


def decode_whole(content_encoding: str | None, data: bytes) -> tuple[Form, bytes]:
    """A whole body's form and its text, decoded in one piece (the engine streams it instead)."""
    form, chunks = open_text(content_encoding, [data])
    return form, data if form.plain else b"".join(chunks)


def json_u(token: str, chars: str = "+=/", upper: bool = False) -> str:
    return "".join((f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}") if c in chars else c for c in token)


def pct(token: str, upper: bool = True) -> str:
    return "".join((f"%{ord(c):02X}" if upper else f"%{ord(c):02x}") if c in ":+/=" else c for c in token)


FORMS: dict[str, Callable[[str], str]] = {
    "plain": lambda t: t,
    "json slash": lambda t: t.replace("/", "\\/"),
    "gson": lambda t: json_u(t, "="),
    "dotnet": lambda t: json_u(t, "+=", upper=True).replace("/", "\\/"),
    "every char": lambda t: json_u(t, t),
    "percent upper": pct,
    "percent lower": lambda t: pct(t, upper=False),
}


def random_token(rng: random.Random) -> str:
    return f"ncpkms:v{rng.randint(1, 99)}:{base64.b64encode(rng.randbytes(rng.choice([30, 31, 32, 45]))).decode()}"


def random_body(rng: random.Random, tokens: int) -> bytes:
    """Tokens in random writings with adversarial neighbours: base64-like letters, bare prefixes,
    broken escapes, stray % and backslashes."""
    parts = []
    writings = list(FORMS.values())
    for _ in range(tokens):
        token = rng.choice(writings)(random_token(rng))
        choice = rng.random()
        if choice < 0.1:
            token += "ncpkms:vX"
        elif choice < 0.15:
            token = token[: rng.randrange(12, len(token))]  # cut anywhere, inside an escape too
        parts.append(rng.choice(["", "AAAA", "=", "x"]) + token)
        parts.append(rng.choice([" ", "\n", "%", "%2", "\\", '\\"', "%20", "\\u0020", "ab+/", "\xff"]))
    return "".join(parts).encode("utf-8", "surrogateescape")
