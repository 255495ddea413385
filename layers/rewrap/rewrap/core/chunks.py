"""Greedy grouping by size: KMS list requests, the engine's memory waves, parked rotate requests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def chunk_by_size(
    items: Iterable[T], limit: int, size: Callable[[Any], int] = len, most: int | None = None
) -> Iterator[list[T]]:
    """Consecutive groups whose combined ``size`` stays within ``limit`` and, given ``most``, that hold at most
    that many items (an oversized item goes alone)."""
    chunk: list[T] = []
    total = 0
    for item in items:
        cost = size(item)
        if chunk and (total + cost > limit or (most is not None and len(chunk) >= most)):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += cost
    if chunk:
        yield chunk
