"""The fleet's results against what was seeded: the rotation's statuses, the merged census, and a
sample of objects read back directly."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..datasets import stratified
from ..harness import unconverged
from .params import NEWEST, PREFIX, REPORTS_BUCKET, SPOT_CHECK, Seeded
from .stack import FleetStack

# How a sweep learns a key's newest version: an encrypt probe (1.0, token auth) or the key's info.
NEWEST_VERSION_PROBES = ("encrypt", "key-info")


def rotation_statuses(stack: FleetStack, seeded: Seeded) -> Counter[str]:
    """The measured objects' statuses in the rotate invocations' audit reports."""
    paginator = stack.admin.get_paginator("list_objects_v2")
    keys = [
        item["Key"]
        for page in paginator.paginate(Bucket=REPORTS_BUCKET, Prefix=f"{seeded.bucket}/")
        for item in page.get("Contents", [])
        if item["Key"].endswith(".jsonl")
    ]

    def read(key: str) -> list[dict[str, Any]]:
        body = stack.admin.get_object(Bucket=REPORTS_BUCKET, Key=key)["Body"].read()
        return [json.loads(line) for line in body.splitlines()]

    with ThreadPoolExecutor(16) as pool:
        records = [r for report in pool.map(read, keys) for r in report]
    return Counter(
        str(r.get("status")) for r in records if r.get("source") == "rotate" and r.get("key", "").startswith(PREFIX)
    )


def check_rotation(seeded: Seeded, figures: dict[str, Any]) -> list[str]:
    statuses = figures["statuses"]
    want = {"rotated": seeded.stale_objects, "current": seeded.size - seeded.stale_objects}
    if statuses != want:
        return [f"rotation statuses {statuses}, expected {want}"]
    return []


def check_census(stack: FleetStack, name: str, run: Any, seeded: Seeded, figures: dict[str, Any]) -> list[str]:
    """The merged census against what was seeded: before the rotation NOT SAFE with exactly the
    seeded stale counts, after it SAFE with every token at the newest version."""
    code, lines = run.judge_lines()
    census = run.census
    versions = {v: c.tokens for v, c in census.by_key.get(stack.key_tag, {}).items() if c.tokens}
    figures.update(
        verdict=census.judge().verdict,
        exit_code=code,
        complete=run.complete,
        accounted=run.accounted,
        census_objects=census.objects,
        tokens_by_version={f"v{v}": n for v, n in sorted(versions.items())},
        headline=lines[0],
    )
    problems = []
    if not run.complete or run.accounted != seeded.size or census.objects != seeded.size:
        problems.append(f"{name}: run incomplete: {census.objects} of {seeded.size} objects ({lines[-1].strip()})")
    if name == "census_before":
        want = {1: seeded.stale_tokens, NEWEST: seeded.tokens - seeded.stale_tokens}
        stale = (census.stale_objects, census.stale_tokens)
        if figures["verdict"] != "NOT SAFE" or stale != (seeded.stale_objects, seeded.stale_tokens):
            problems.append(f"census before the rotation: {lines[0]!r}, seeded {seeded.stale_tokens} stale tokens")
    else:
        want = {NEWEST: seeded.tokens}
        if figures["verdict"] != "SAFE" or code != 0:
            problems.append(f"census after the rotation is not SAFE: {lines[0]!r}")
    if versions != want:
        problems.append(f"{name}: tokens by version {versions}, seeded {want}")
    # the sweep asks for the key's newest version once (its listing record keeps it, for retire); no token
    # goes to KMS
    tokens_sent = {op: n for op, n in figures["kms_ops"].items() if op not in NEWEST_VERSION_PROBES}
    if tokens_sent:
        problems.append(f"{name}: a census sent tokens to KMS: {tokens_sent} (it needs none)")
    return problems


def spot_check(stack: FleetStack, seeded: Seeded, out: dict[str, Any]) -> list[str]:
    """A sample read back directly, not through the census: every token at the newest version, and
    every one decrypts (the emulator opens it)."""
    sample = stratified(seeded.items, SPOT_CHECK)
    tokens: list[str] = []
    wrong = unconverged(stack.admin, seeded.bucket, sample, newest=NEWEST, tokens=tokens)
    undecryptable = stack.kms.call("undecryptable", stack.key_tag, tokens)
    out["spot_check"] = {"objects": len(sample), "tokens": len(tokens), "wrong": wrong[:10]}
    out["spot_check"]["undecryptable"] = undecryptable
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} of {len(sample)} objects read back not all at v{NEWEST}: {wrong[:3]}")
    if undecryptable:
        problems.append(f"{undecryptable} of {len(tokens)} tokens read back do not decrypt")
    return problems


# A converged target's scheduled sweep: its listing pages and a few requests of its own, nothing enqueued.
STEADY_OWN_REQUESTS = 8


def check_steady(seeded: Seeded, figures: dict[str, Any]) -> list[str]:
    """The second look takes exactly what the rotation wrote; the sweep after it enqueues nothing and costs
    at most its listing and a few requests."""
    look, steady = figures["second_look"], figures["steady"]
    problems = []
    if (look["scope"], look["enqueued"]) != ("incremental", seeded.stale_objects):
        problems.append(f"second look: {look['scope']}, {look['enqueued']} enqueued, expected {seeded.stale_objects}")
    if (steady["scope"], steady["enqueued"]) != ("incremental", 0):
        problems.append(f"steady sweep: {steady['scope']}, {steady['enqueued']} enqueued, expected nothing")
    pages = -(-seeded.size // 1000)
    if steady["s3_requests"] > pages + STEADY_OWN_REQUESTS:
        problems.append(
            f"steady sweep: {steady['s3_requests']} S3 requests for {pages} listing pages ({steady['s3_ops']})"
        )
    return problems
