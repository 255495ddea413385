"""How the engine groups objects for one KMS round: read a chunk at a time, re-wrap a round's tokens together.

Two needs pull apart. KMS requests should be full (NCP's request rate is what a large rotation spends),
so a round gathers the tokens of several chunks. But an object's time from read to write is a window in
which another writer's metadata-only change to it goes unseen on the PutObject path, so a round stops
gathering after ``GATHER_SECONDS``, or as soon as its tokens fill more than one KMS request.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import islice

from rewrap.core.ports import ObjectRef, Rewrapper
from rewrap.core.results import ObjectResult
from rewrap.core.rewrapping import TokenRewrapper, VersionCache
from rewrap.core.runner import Runner
from rewrap.core.streamed import Allowance
from rewrap.core.work import Group, Work
from rewrap.deadline import Deadline

# Objects read at once, per thread of the pool.
CHUNK_OBJECTS_PER_THREAD = 2
# A round gathers reads for at most this long: well within the store's re-check window (one second).
GATHER_SECONDS = 0.2


class Memory:
    """What a round's bodies may take: those read with their head, held until their wave (a quarter of the
    budget: the next round reads them while this one's waves, sized to the rest, are in memory), and
    decoded gzip/UTF-16 bodies."""

    def __init__(self, budget: int) -> None:
        self.early = Allowance(budget // 4)
        self.decoded = Allowance(budget)


@dataclass
class Round:
    """Objects read for one KMS round, on their way to KMS and back to S3."""

    memory: Memory
    run: Runner
    kms: TokenRewrapper
    deadline: Deadline
    dry_run: bool
    results: dict[ObjectRef, ObjectResult]
    works: list[Work] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stale: dict[Group, set[str]] = field(default_factory=lambda: defaultdict(set))
    _unknown: bool = False  # a body still to be read: its tokens are not counted

    def add(self, works: list[Work], versions: VersionCache) -> None:
        self.works += works
        for work in works:
            if work.body_unread:
                self._unknown = True
                continue
            newest = versions.newest(work.key_tag)
            self._stale[work.group].update(t.text for t in work.tokens if newest is None or t.version < newest)

    def full(self, kms: Rewrapper) -> bool:
        """Whether to stop gathering: long enough, or more tokens than one KMS request takes."""
        if self._unknown or time.monotonic() - self.started >= GATHER_SECONDS:
            return True
        return any(len(list(islice(kms.batches(list(tokens)), 2))) > 1 for tokens in self._stale.values())
