"""Time budgets: every wait and every request is bounded by the invocation's remaining time.

Both take a ``Clock`` (monotonic seconds and a sleep), so tests drive time by hand instead of
asserting on the wall clock of a busy machine."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.monotonic  # for intervals and budgets
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time  # for what others read: signatures, token expiry, Date headers


SYSTEM_CLOCK = Clock()
_EPSILON = 1e-9


class Deadline:
    """A point in monotonic time; ``None`` seconds means no limit (command line, tests)."""

    def __init__(self, seconds: float | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._at = math.inf if seconds is None else clock.now() + seconds

    @classmethod
    def from_lambda_context(cls, context: Any, reserve_seconds: float = 5.0) -> Deadline:
        """The Lambda's remaining time minus a reserve for answering and flushing metrics."""
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if getter is None:
            return cls(None)
        return cls(max(0.0, getter() / 1000.0 - reserve_seconds))

    def remaining(self) -> float:
        return max(0.0, self._at - self.clock.now())

    def expired(self, margin: float = 0.0) -> bool:
        return self.remaining() <= margin


class RateLimiter:
    """Token bucket shared by all threads of a container, so a fleet backs off before NCP throttles."""

    def __init__(self, per_second: float, burst: float | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.per_second = per_second
        self.capacity = burst if burst is not None else max(1.0, per_second)
        self.clock = clock
        self._tokens = self.capacity
        self._updated = clock.now()
        self._lock = threading.Lock()

    def acquire(self, deadline: Deadline) -> bool:
        """Wait for one request slot; False when the deadline would pass first."""
        if self.per_second <= 0:
            return True
        while True:
            with self._lock:
                now = self.clock.now()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
                self._updated = now
                if self._tokens >= 1 - _EPSILON:  # after a sleep the refill may fall short by a rounding error
                    self._tokens = max(0.0, self._tokens - 1)
                    return True
                wait = (1 - self._tokens) / self.per_second
            if wait >= deadline.remaining():
                return False
            self.clock.sleep(wait)

    def throttled(self) -> None:
        """NCP answered 429: a fixed rate keeps its pace (the client's backoff handles the retry)."""


class AdaptiveRateLimiter(RateLimiter):
    """A token bucket whose rate starts at ``ceiling``, halves when NCP throttles (429) and recovers
    additively by ``recovery`` requests/s every second back to the ceiling (AIMD): one container
    runs at full speed while NCP has room and backs off together with the others when it has not.

    A burst of 429s answered to requests already in flight counts as one signal: the rate halves
    at most once per ``cut_interval`` seconds."""

    def __init__(
        self,
        ceiling: float,
        *,
        floor: float | None = None,
        recovery: float | None = None,
        cut_interval: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(ceiling, clock=clock)
        self.ceiling = ceiling
        self.floor = floor if floor is not None else max(0.5, ceiling / 64)
        self.recovery = recovery if recovery is not None else max(0.5, ceiling / 20)  # half → full in ~10 s
        self.cut_interval = cut_interval
        self.cuts = 0
        self._last_cut = -math.inf
        self._grown = clock.now()

    def acquire(self, deadline: Deadline) -> bool:
        with self._lock:
            now = self.clock.now()
            if self.per_second < self.ceiling:
                self.per_second = min(self.ceiling, self.per_second + self.recovery * (now - self._grown))
                self.capacity = max(1.0, self.per_second)
            self._grown = now
        return super().acquire(deadline)

    def throttled(self) -> None:
        with self._lock:
            now = self.clock.now()
            if now - self._last_cut < self.cut_interval:
                return
            self._last_cut = now
            self.cuts += 1
            self.per_second = max(self.floor, self.per_second / 2)
            self.capacity = max(1.0, self.per_second)
            self._tokens = min(self._tokens, 0.0)  # no burst right after a throttle
            self._grown = now
