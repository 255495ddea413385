"""``rewrap plan``: what a rotation of a prefix will take and cost, before it starts.

From a census report (``rewrap census --report FILE``, JSON lines or CSV: per object its kind and
tokens per version) or an S3 Inventory CSV (bucket, key, size, …: no token counts, so every object
is assumed to be a text object holding ``--tokens-per-object`` tokens, all older than the newest
version). The request counts follow the engine's paths. Time is set by the slowest of three limits,
which the plan names: the rotate containers (each CPU-bound at rewrap's CPU per object, measured by
``make bench-path``, or bound by S3's latency at REWRAP_CONCURRENCY requests in flight), NCP's request
rate, and S3's request rate per prefix. It also gives what finishes within 24 hours. Prices are
parameters (AWS us-east-1 list prices by default).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewrap.errors import ConfigError


@dataclass(frozen=True)
class Prices:
    """List prices in USD. Defaults: AWS us-east-1 (arm64 Lambda) as published in 2024-2025. NCP KMS
    is billed per request by NCP; its price is not built in (0 = not priced): pass yours."""

    s3_write_per_1k: float = 0.005  # PUT, COPY, POST, LIST
    s3_read_per_1k: float = 0.0004  # GET, HEAD
    lambda_gb_second: float = 0.0000133334  # arm64
    lambda_per_1m_requests: float = 0.20
    sqs_per_1m_requests: float = 0.40
    kms_per_10k: float = 0.0


# rewrap's CPU per rotated object, the rotate route on an SQS batch of the sweep's requests (small text
# objects and envelopes, BucketOwnerEnforced): `make bench-path` on moto, 2026-12-05 (docs/bench/path-moto.md).
BENCH_CPU_MS_PER_OBJECT = 3.8
MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB; a Python process uses at most one (the GIL)
S3_WRITES_PER_PREFIX = 3500  # requests/s S3 sustains per partitioned prefix (PUT/COPY/POST/DELETE)
S3_READS_PER_PREFIX = 5500  # GET/HEAD
DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Fleet:
    kms_rate: float = 200.0  # NCP requests/s for the whole fleet (NCP_KMS_RATE_BUDGET)
    containers: int = 6  # rotate containers at once (RotateReservedConcurrency)
    memory_gb: float = 1.0  # the rotate function's memory
    cpu_ms_per_object: float = BENCH_CPU_MS_PER_OBJECT
    concurrency: int = 16  # REWRAP_CONCURRENCY: S3 requests in flight per container
    s3_latency_ms: float = 30.0  # one S3 request's round trip from Lambda
    acls: bool = False  # a bucket whose ACLs apply: a GetObjectAcl per rotated object
    prefixes: int = 1  # S3 prefixes the objects spread over
    keys_per_message: int = 100
    tokens_per_kms_request: int = 100  # tokens re-wrapped by one request (1.0 lists: up to 32 KB)

    @property
    def seconds_per_object(self) -> float:
        """A rotate container's time per object (Lambda GB-seconds follow it)."""
        return 1 / self.container_rate()[0]

    @property
    def requests_per_rotated_object(self) -> int:
        return 3 if self.acls else 2  # GET, (GetObjectAcl,) PUT or COPY

    def container_rate(self) -> tuple[float, str]:
        """Objects/s one rotate container sustains, and what bounds it."""
        cpu = min(1.0, self.memory_gb * 1024 / MB_PER_VCPU) / (self.cpu_ms_per_object / 1000)
        latency = self.concurrency / (self.requests_per_rotated_object * self.s3_latency_ms / 1000)
        return (cpu, "Lambda CPU") if cpu <= latency else (latency, "S3 latency")


@dataclass
class Inventory:
    objects: Counter[str] = field(default_factory=Counter)  # per kind
    stale_objects: int = 0
    stale_tokens: int = 0
    tokens: int = 0
    kms_requests: int = 0


def read_census_report(path: Path, prefix: str, min_version: int | None, tokens_per_request: int) -> Inventory:
    """A census report's objects (under ``prefix``): stale ones are those with a version older than
    ``min_version`` (None: every object holding tokens)."""
    inventory = Inventory()
    for record in _records(path):
        if record.get("kind") == "verdict" or not str(record.get("key", "")).startswith(prefix):
            continue
        versions = _versions(record.get("versions"))
        stale = sum(n for v, n in versions.items() if min_version is None or v < min_version)
        inventory.objects[str(record.get("kind", "text"))] += 1
        inventory.tokens += sum(versions.values())
        if stale:
            inventory.stale_objects += 1
            inventory.stale_tokens += stale
    inventory.kms_requests = math.ceil(inventory.stale_tokens / tokens_per_request)  # objects share requests
    return inventory


def read_inventory_csv(path: Path, prefix: str, tokens_per_object: int, tokens_per_request: int) -> Inventory:
    """An S3 Inventory CSV (no header; bucket, key, … as the inventory's fileSchema): every object a
    text object with ``tokens_per_object`` tokens to re-wrap."""
    inventory = Inventory()
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.reader(file):
            if len(row) < 2 or not row[1].startswith(prefix):
                continue
            inventory.objects["text"] += 1
            inventory.tokens += tokens_per_object
            if tokens_per_object:
                inventory.stale_objects += 1
                inventory.stale_tokens += tokens_per_object
    inventory.kms_requests = math.ceil(inventory.stale_tokens / tokens_per_request)
    return inventory


@dataclass
class Limits:
    """Objects/s each limit allows, and what it takes to finish within a day."""

    rates: dict[str, float]  # limit → objects/s
    day_containers: int  # rotate containers (Lambda concurrency) that finish within 24 h
    day_kms_rate: float  # NCP requests/s that does
    day_prefixes: int  # S3 prefixes that do

    @property
    def bound(self) -> str:
        return min(self.rates, key=lambda name: self.rates[name])


@dataclass
class Plan:
    inventory: Inventory
    s3_reads: int
    s3_writes: int
    sqs_requests: int
    invocations: int
    kms_requests: int
    hours: float
    bound: str
    gb_seconds: float
    costs: dict[str, float | None]
    limits: Limits

    def rows(self) -> list[tuple[str, str, str]]:
        cost = self.costs

        def usd(name: str) -> str:
            value = cost[name]
            return "not priced (--price-kms-per-10k)" if value is None else f"${value:,.2f}"

        objects = ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.inventory.objects.items())) or "none"
        return [
            ("objects", objects, ""),
            ("to rotate", f"{self.inventory.stale_objects:,} objects, {self.inventory.stale_tokens:,} tokens", ""),
            ("S3 reads (GET, HEAD)", f"{self.s3_reads:,}", usd("s3_reads")),
            ("S3 writes (PUT, COPY, LIST)", f"{self.s3_writes:,}", usd("s3_writes")),
            ("SQS requests", f"{self.sqs_requests:,}", usd("sqs")),
            ("Lambda invocations", f"{self.invocations:,}", usd("lambda_requests")),
            ("Lambda GB-seconds", f"{self.gb_seconds:,.0f}", usd("lambda_compute")),
            ("NCP KMS requests", f"{self.kms_requests:,}", usd("kms")),
            ("time", f"{self.hours:,.2f} h, bound by {self.bound}", ""),
            *((f"  {name}", f"{rate:,.0f} objects/s", "") for name, rate in self.limits.rates.items()),
            (
                "within 24 h",
                f"{self.limits.day_containers:,} containers (RotateMaxConcurrency, RotateReservedConcurrency), "
                f"NCP {math.ceil(self.limits.day_kms_rate):,} requests/s (NcpRateBudget), "
                f"keys over {self.limits.day_prefixes:,} S3 prefixes",
                "",
            ),
            ("total", "", f"${sum(v for v in cost.values() if v is not None):,.2f}"),
        ]


def limits(inventory: Inventory, fleet: Fleet) -> Limits:
    """The rate each limit allows (objects/s over all the objects to look at), and what finishes in a day."""
    objects = max(1, sum(inventory.objects.values()))
    stale_share = inventory.stale_objects / objects
    per_container, container_bound = fleet.container_rate()
    kms_per_object = inventory.kms_requests / objects  # NCP requests per object looked at
    writes = stale_share  # one PUT or COPY per rotated object
    reads = 1 + (stale_share if fleet.acls else 0)  # the GET, and GetObjectAcl before each write
    rates = {
        f"Lambda: {fleet.containers} containers ({container_bound})": fleet.containers * per_container,
        f"NCP: {fleet.kms_rate:g} requests/s": fleet.kms_rate / kms_per_object if kms_per_object else math.inf,
        f"S3: {fleet.prefixes} prefix(es)": fleet.prefixes
        * min(S3_WRITES_PER_PREFIX / writes if writes else math.inf, S3_READS_PER_PREFIX / reads),
    }
    needed = objects / DAY_SECONDS
    return Limits(
        rates,
        day_containers=math.ceil(needed / per_container),
        day_kms_rate=needed * kms_per_object,
        day_prefixes=max(1, math.ceil(needed * max(writes / S3_WRITES_PER_PREFIX, reads / S3_READS_PER_PREFIX))),
    )


def make_plan(inventory: Inventory, fleet: Fleet, prices: Prices) -> Plan:
    objects = sum(inventory.objects.values())
    stale = inventory.stale_objects
    # Every object: one GET (head and body); a rotated one: one write (PUT, or COPY for an envelope),
    # and a GetObjectAcl first where the bucket's ACLs apply. The sweep lists 1,000 keys a page.
    s3_reads = objects + (stale if fleet.acls else 0)
    s3_writes = stale + math.ceil(objects / 1000)
    messages = math.ceil(objects / fleet.keys_per_message)
    sqs_requests = math.ceil(messages / 10) + 2 * messages  # sends in batches of 10; receive + delete
    invocations = math.ceil(messages / 10)  # the event source mapping delivers up to 10 messages
    bounds = limits(inventory, fleet)
    bound = bounds.bound
    seconds = objects / bounds.rates[bound] if objects else 0.0
    gb_seconds = seconds * fleet.containers * fleet.memory_gb
    costs: dict[str, float | None] = {
        "s3_reads": s3_reads / 1000 * prices.s3_read_per_1k,
        "s3_writes": s3_writes / 1000 * prices.s3_write_per_1k,
        "sqs": sqs_requests / 1e6 * prices.sqs_per_1m_requests,
        "lambda_requests": invocations / 1e6 * prices.lambda_per_1m_requests,
        "lambda_compute": gb_seconds * prices.lambda_gb_second,
        "kms": inventory.kms_requests / 10_000 * prices.kms_per_10k if prices.kms_per_10k else None,
    }
    return Plan(
        inventory,
        s3_reads,
        s3_writes,
        sqs_requests,
        invocations,
        inventory.kms_requests,
        seconds / 3600,
        bound,
        gb_seconds,
        costs,
        bounds,
    )


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    with text:
        if path.suffix == ".csv":
            yield from csv.DictReader(text)
            return
        for number, line in enumerate(text, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ConfigError(f"{path}:{number} is not a JSON line of a census report") from exc


def _versions(value: Any) -> dict[int, int]:
    """``{"v1": 3}`` (JSON) or ``v1=3;v2=1`` (CSV) → {1: 3, 2: 1}."""
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, str) and value:
        items = (part.partition("=")[::2] for part in value.split(";") if "=" in part)
    else:
        return {}
    return {int(str(k).lstrip("v")): int(n) for k, n in items}
