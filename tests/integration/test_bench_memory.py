"""``make bench``'s memory figure for a large object is the rotating process's own: the bench holds
data sets in memory, and a child's peak must not include its parent's (Linux's ru_maxrss would)."""

from __future__ import annotations

import pytest

from rewrap_local.bench.harness import Bench, Params
from rewrap_local.bench.large import measure_large

HELD_MIB = 512  # what the bench process holds while the child rotates: more than the child can need
LARGE_MIB = 32


def quiet(message: str) -> None:
    pass


@pytest.mark.timeout(600)
def test_the_large_object_peak_is_the_rotating_childs_alone() -> None:
    params = Params(
        quick=True,
        seed=3,
        concurrency=4,
        kms_rate_limit=0,
        batch=100,
        kms_latency_ms=(0.0, 0.0),
        s3_latency_ms=0.0,
        large_mib=LARGE_MIB,
        repeat=1,
    )
    held = bytearray(HELD_MIB * 1024 * 1024)
    held[::4096] = b"\1" * len(held[::4096])  # resident, not just reserved
    bench = Bench(params)
    try:
        result = measure_large(bench, quiet)
    finally:
        bench.close()
    assert result["status"] == "rotated" and result["rotated_tokens"] == result["tokens"] == LARGE_MIB * 4
    # The body is streamed once; the first GET, which brings the head, is closed unread past its headers (the
    # meter counts the bytes the client consumed)
    assert result["s3"]["bytes_read"] == LARGE_MIB * 1024 * 1024
    # the child's rise above its own baseline: a couple of 16 MiB segments and their copies, far below
    # the bench's resident bytes it would report if the parent's high-water mark leaked into it
    assert 0 < result["peak_above_baseline_mib"] < HELD_MIB / 4, result
    assert result["peak_rss_mib"] < HELD_MIB, result
    del held
