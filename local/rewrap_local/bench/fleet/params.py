"""The fleet bench's parameters and what one size seeded."""

from __future__ import annotations

from dataclasses import dataclass

from ..datasets import Item

DEFAULT_SIZES = (1000, 5000, 20000)
QUICK_SIZES = (200, 1000)
PREFIX = "data/"
REPORTS_BUCKET = "rewrap-fleet-reports"
NEWEST = 2  # the seeded key is rotated once: v1 is stale, v2 current
ENVELOPE_BYTES = 4096
SPOT_CHECK = 300  # objects read back directly after the rotation, besides the census
# Per rotate container, objects under warmup/ it rotates and counts once before the measured runs, so no
# measured invocation pays for a container's first calls (botocore loads each operation's model lazily).
WARMUP_PER_CONTAINER = 20
WARMUP = "warmup/"


@dataclass
class FleetParams:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    workers: int = 4
    traced: int = 2  # rotate containers that trace memory (the sweep's always does)
    census_before: bool = False  # a census run before the rotation too (NOT SAFE, with the seeded counts)
    batch: int = 2  # messages per invocation (Lambda's BatchSize, ≤ 10 per ReceiveMessage here)
    keys_per_message: int = 25
    concurrency: int = 16
    kms_latency_ms: tuple[float, float] = (20.0, 40.0)
    s3_latency_ms: float = 3.0
    tolerance: float = 0.25
    seed: int = 7
    quick: bool = False
    phase_timeout_s: float = 1800.0
    merge_repeats: int = 7  # rounds of census merges timed after the runs; the figure is the median


@dataclass
class Seeded:
    size: int
    bucket: str
    items: list[Item]
    queue_url: str
    dead_letter_queue_url: str
    warmup: list[Item]

    @property
    def stale_objects(self) -> int:
        return sum(not i.current for i in self.items)

    @property
    def stale_tokens(self) -> int:
        return sum(i.tokens for i in self.items if not i.current)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)
