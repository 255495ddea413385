"""The data sets: small documents, configs, NDJSON and envelopes, seeded from one token pool."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rewrap_local.stack import REGION

from .constants import WRAPPED_KEY_METADATA, MiB


@dataclass
class Item:
    """One seeded object, kept so any contender's run can be undone (envelope bodies are shared)."""

    key: str
    envelope: bool
    current: bool  # seeded at the newest key version already
    tokens: int
    size: int
    content_type: str
    metadata: dict[str, str]
    body: bytes | None = None

    @property
    def group(self) -> str:
        return f"{'envelope' if self.envelope else 'text'}-{'current' if self.current else 'old'}-{self.tokens > 3}"


@dataclass
class DataSet:
    name: str
    title: str
    items: list[Item]
    envelope_body: bytes = b""
    naive_objects: int = 0  # sample size for the naive rotator (0 = all)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)


class TokenPool:
    """Tokens handed out in order; ``current`` ones come from the pool made after the rotation."""

    def __init__(self) -> None:
        self.old: list[str] = []
        self.new: list[str] = []
        self.wanted = Counter[bool]()

    def take(self, current: bool) -> str:
        self.wanted[current] += 1
        pool = self.new if current else self.old
        if not pool:  # counting pass: a placeholder of the real length
            return "ncpkms:v1:" + "A" * 80
        return pool.pop()


WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")


def prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _small_doc(rng: random.Random, i: int, tokens: list[str]) -> bytes:
    doc = {
        "id": i,
        "service": f"svc-{i % 37}",
        "owner": f"team-{rng.choice(WORDS)}",
        "credentials": {f"secret{j}": t for j, t in enumerate(tokens)},
        "notes": prose(rng, rng.randint(10, 60)),
    }
    return json.dumps(doc, indent=2).encode()


def _config_doc(rng: random.Random, tokens: list[str]) -> bytes:
    tenants = [{"name": f"tenant-{j}", "region": REGION, "dbPassword": t} for j, t in enumerate(tokens)]
    return json.dumps({"version": 3, "tenants": tenants, "comment": prose(rng, 40)}, indent=2).encode()


def _ndjson(rng: random.Random, rows: int, pool: TokenPool) -> bytes:
    lines = [
        json.dumps(
            {
                "id": r,
                "email": f"user{r}@example.com",
                "plan": rng.choice(("free", "pro", "team")),
                "ssn": pool.take(False),
                "note": prose(rng, rng.randint(3, 12)),
            }
        )
        for r in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _text(key: str, body: bytes, tokens: int, current: bool, content_type: str = "application/json") -> Item:
    return Item(key, False, current, tokens, len(body), content_type, {"owner": "bench"}, body)


def _envelope(key: str, size: int, token: str, current: bool) -> Item:
    metadata = {WRAPPED_KEY_METADATA: token, "cipher": "AES256-GCM"}
    return Item(key, True, current, 1, size, "application/octet-stream", metadata)


@dataclass(frozen=True)
class Scale:
    small: int
    ndjson_files: int
    ndjson_rows: int
    envelopes: int
    envelope_mib: int
    mixed: int
    large_mib: int
    gzip_mib: int
    scan_mib: int
    naive_small: int
    naive_ndjson: int
    naive_mixed: int


FULL = Scale(400, 10, 3000, 16, 16, 400, 1024, 256, 64, 100, 1, 0)
QUICK = Scale(100, 4, 800, 6, 4, 120, 256, 32, 16, 40, 1, 60)


def build_data_sets(scale: Scale, pool: TokenPool, seed: int) -> list[DataSet]:
    """Deterministic for a seed, so a counting pass and the real pass build the same objects."""
    rng = random.Random(seed)
    small: list[Item] = []
    for i in range(scale.small):
        tokens = [pool.take(False) for _ in range(rng.randint(1, 3))]
        small.append(_text(f"small/{i:05d}.json", _small_doc(rng, i, tokens), len(tokens), False))
    ndjson = [
        _text(f"ndjson/{i:03d}.ndjson", _ndjson(rng, scale.ndjson_rows, pool), scale.ndjson_rows, False, "x-ndjson")
        for i in range(scale.ndjson_files)
    ]
    envelope_bytes = scale.envelope_mib * MiB
    envelopes = [
        _envelope(f"envelope/{i:03d}.bin", envelope_bytes, pool.take(False), False) for i in range(scale.envelopes)
    ]
    mixed = mixed_items(scale.mixed, pool, rng)
    return [
        DataSet("small", f"{scale.small} small JSON files, 1-3 tokens each", small, naive_objects=scale.naive_small),
        DataSet(
            "ndjson",
            f"{scale.ndjson_files} NDJSON files x {scale.ndjson_rows:,} tokens",
            ndjson,
            naive_objects=scale.naive_ndjson,
        ),
        DataSet(
            "envelope",
            f"{scale.envelopes} envelope objects x {scale.envelope_mib} MiB, wrapped key in metadata",
            envelopes,
            envelope_body=b"",
        ),
        DataSet(
            "mixed",
            f"{scale.mixed} mixed objects (70% small, 10% configs of 20-60 tokens, 20% envelopes), half current",
            mixed,
            naive_objects=scale.naive_mixed,
        ),
    ]


def mixed_items(
    count: int,
    pool: TokenPool,
    rng: random.Random,
    *,
    prefix: str = "mixed/",
    envelope_bytes: int = 256 * 1024,
    config_tokens: tuple[int, int] = (20, 60),
) -> list[Item]:
    """70% small JSON documents of 1-3 tokens, 10% configs, 20% envelopes; in blocks of ten, so
    every kind is half current."""
    items: list[Item] = []
    for i in range(count):
        current = (i // 10) % 2 == 1
        kind = i % 10
        key = f"{prefix}{i:05d}"
        if kind <= 6:
            tokens = [pool.take(current) for _ in range(rng.randint(1, 3))]
            items.append(_text(f"{key}.json", _small_doc(rng, i, tokens), len(tokens), current))
        elif kind == 7:
            tokens = [pool.take(current) for _ in range(rng.randint(*config_tokens))]
            items.append(_text(f"{key}.config.json", _config_doc(rng, tokens), len(tokens), current))
        else:
            items.append(_envelope(f"{key}.bin", envelope_bytes, pool.take(current), current))
    return items


def stratified(items: Sequence[Item], n: int) -> list[Item]:
    """About ``n`` items with the same mix of kinds as ``items`` (every k-th within each kind)."""
    if n <= 0 or n >= len(items):
        return list(items)
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    picked: list[Item] = []
    for members in groups.values():
        want = max(1, round(len(members) * n / len(items)))
        step = len(members) / want
        picked.extend(members[int(k * step)] for k in range(want))
    return sorted(picked, key=lambda i: i.key)


def path_items(pool: TokenPool, seed: int, *, small: int = 240, ndjson: int = 4, rows: int = 500) -> list[Item]:
    """The set of the per-object request count (``bench.path``): small JSON documents of 1-3 tokens,
    NDJSON files, and 64 KiB envelopes (one for every six small documents), all at the old version."""
    rng = random.Random(seed)
    items: list[Item] = []
    for i in range(small):
        tokens = [pool.take(False) for _ in range(rng.randint(1, 3))]
        items.append(_text(f"small/{i:05d}.json", _small_doc(rng, i, tokens), len(tokens), False))
    for i in range(ndjson):
        items.append(_text(f"ndjson/{i:03d}.ndjson", _ndjson(rng, rows, pool), rows, False, "x-ndjson"))
    for i in range(small // 6):
        items.append(_envelope(f"envelope/{i:03d}.bin", 64 * 1024, pool.take(False), False))
    return items
