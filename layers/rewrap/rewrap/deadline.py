"""Time budgets: every wait and every request is bounded by the invocation's remaining time."""

from __future__ import annotations

import math
import threading
import time
from typing import Any


class Deadline:
    """A point in monotonic time; ``None`` seconds means no limit (command line, tests)."""

    def __init__(self, seconds: float | None = None) -> None:
        self._at = math.inf if seconds is None else time.monotonic() + seconds

    @classmethod
    def from_lambda_context(cls, context: Any, reserve_seconds: float = 5.0) -> Deadline:
        """The Lambda's remaining time minus a reserve for answering and flushing metrics."""
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if getter is None:
            return cls(None)
        return cls(max(0.0, getter() / 1000.0 - reserve_seconds))

    def remaining(self) -> float:
        return max(0.0, self._at - time.monotonic())

    def expired(self, margin: float = 0.0) -> bool:
        return self.remaining() <= margin


class RateLimiter:
    """Token bucket shared by all threads of a container, so a fleet backs off before NCP throttles."""

    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self.per_second = per_second
        self.capacity = burst if burst is not None else max(1.0, per_second)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, deadline: Deadline) -> bool:
        """Wait for one request slot; False when the deadline would pass first."""
        if self.per_second <= 0:
            return True
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                wait = (1 - self._tokens) / self.per_second
            if wait >= deadline.remaining():
                return False
            time.sleep(wait)
