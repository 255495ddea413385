"""A hand-driven clock for Deadline, RateLimiter and the NCP client: time moves only when something
sleeps or the test advances it, so no test depends on how busy the machine is."""

from __future__ import annotations

import time

from rewrap.deadline import Clock


class ManualClock:
    def __init__(self, start: float = 1000.0, wall_start: float | None = None) -> None:
        self.t = start
        # wall time starts at the real one (the emulator checks signature times) and moves with ``t``
        self.wall_offset = (time.time() if wall_start is None else wall_start) - start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.wall_offset

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds

    @property
    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep, wall=self.wall)
