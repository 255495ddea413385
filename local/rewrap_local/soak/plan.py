"""The fault plan: the object kinds, the soak's configuration, the fault kinds, and which faults each
phase of a round injects on which slice of the objects."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from rewrap.core.metadata import STAMP_METADATA

if TYPE_CHECKING:
    from .corpus import Original


MiB = 1024 * 1024
KINDS = ("bare", "json", "ndjson", "env", "envelope", "convergent", "large", "empty", "plain")
STAMPS = STAMP_METADATA  # rewrap's own bookkeeping metadata
COMPARED_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentLanguage",
    "ContentDisposition",
    "CacheControl",
    "StorageClass",
    "ServerSideEncryption",
)
# Every plaintext starts with this, so a leak of one (or of its base64, which starts with
# "c2VjcmV0") is found by a search instead of one comparison per plaintext.
PLAINTEXT_PREFIX = "secret-"
PLAINTEXT_RE = re.compile(r"secret-[0-9a-f]{16}|c2VjcmV0")
SIGNATURE_RE = re.compile(r"[A-Za-z0-9+/]{43}=")

# What the soak changes in the stack's configuration.
SOAK_ENVIRONMENT = {
    "REWRAP_VERIFY": "true",  # a well-formed but corrupt reply must be refused, never written
    # A warm container trusts the newest version it saw for this long, so right after a rotation
    # it would answer "current" (README: known limits); the soak rotates every round.
    "REWRAP_VERSION_CACHE_SECONDS": "0",
    "REWRAP_STREAM_THRESHOLD_BYTES": str(4 * MiB),  # "large" objects are streamed in 6 MiB parts
    "REWRAP_SEGMENT_BYTES": str(6 * MiB),
    "NCP_KMS_TIMEOUT_SECONDS": "1.5",  # an injected 2 s hang is a client timeout
    "REWRAP_CONCURRENCY": "8",
}
FAULT_KINDS = (
    "kms:throttle",
    "kms:throttle-retry-after",
    "kms:server-error",
    "kms:timeout",
    "kms:reset",
    "kms:non-json",
    "kms:short-reply",
    "kms:extra-item",
    "kms:bad-pattern",
    "kms:lower-version",
    "kms:corrupt",
    "kms:verify-decrypt",
    "s3:slowdown",
    "s3:overwrite",
    "s3:delete",
    "s3:precondition",
    "s3:part-failure",
    "app:rewrite",
    "app:metadata",
    "invocation:crash",
    "invocation:out-of-time",
    "secret:rotated",
    "secret:unreachable",
    "secret:malformed",
)
# Phases that can only bite with a large (multipart) object in their slice get those first.
WANTS_LARGE = ("s3:part-failure", "invocation:crash", "s3:overwrite", "s3:delete", "invocation:out-of-time")


def zip_longest_lists(groups: list[list[str]]) -> Iterator[list[str]]:
    """Round-robin over groups: one of each, then the next of each, …"""
    for index in range(max((len(g) for g in groups), default=0)):
        yield [g[index] for g in groups if index < len(g)]


def plan_phases(rng: random.Random, faults: Sequence[str], round_no: int) -> list[list[str]]:
    """Even rounds: each kind alone. Odd rounds: random mixes, at most one secret fault each."""
    if round_no % 2 == 0:
        return [[kind] for kind in faults]
    others = [k for k in faults if not k.startswith("secret:")]
    secrets = [k for k in faults if k.startswith("secret:")]
    phases = []
    for _ in range(max(4, len(faults) // 3)):
        kinds = rng.sample(others, min(len(others), rng.randint(3, 6)))
        if secrets and rng.random() < 0.5:
            kinds.append(rng.choice(secrets))
        phases.append(kinds)
    return phases


def plan_slices(
    rng: random.Random, originals: Mapping[str, Original], keys: list[str], phases: list[list[str]]
) -> list[list[str]]:
    """Disjoint slices with a mix of kinds each; phases that need a large object get one first."""
    large = [k for k in keys if originals[k].kind == "large"]
    by_kind: dict[str, list[str]] = {}
    for key in keys:
        if originals[key].kind != "large":
            by_kind.setdefault(originals[key].kind, []).append(key)
    for bucket in by_kind.values():
        rng.shuffle(bucket)
    interleaved = [k for group in zip_longest_lists(list(by_kind.values())) for k in group]
    slices: list[list[str]] = [[] for _ in phases]
    wanting = sorted(
        range(len(phases)),
        key=lambda i: min((WANTS_LARGE.index(k) for k in phases[i] if k in WANTS_LARGE), default=99),
    )
    for index, key in zip(wanting, large, strict=False):
        slices[index].append(key)
    for index, leftover in enumerate(large[len(phases) :]):
        slices[index % len(phases)].append(leftover)
    bounds = [round(i * len(interleaved) / len(phases)) for i in range(len(phases) + 1)]
    for index in range(len(phases)):
        slices[index].extend(interleaved[bounds[index] : bounds[index + 1]])
    return slices
