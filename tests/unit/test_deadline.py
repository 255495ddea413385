"""Deadline and RateLimiter on a hand-driven clock: no test here waits or reads the wall clock."""

from __future__ import annotations

from rewrap.deadline import Deadline, RateLimiter
from tests.clocks import ManualClock


def test_deadline_counts_down_with_its_clock() -> None:
    manual = ManualClock()
    deadline = Deadline(10, manual.clock)
    assert deadline.remaining() == 10 and not deadline.expired()
    manual.t += 7
    assert deadline.remaining() == 3 and deadline.expired(margin=3) and not deadline.expired(margin=2.9)
    manual.t += 5
    assert deadline.remaining() == 0 and deadline.expired()


def test_no_deadline_never_expires() -> None:
    assert not Deadline(None).expired(margin=1e9)


def test_deadline_from_a_lambda_context_keeps_a_reserve() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    assert 24.9 < Deadline.from_lambda_context(Context(), reserve_seconds=5).remaining() <= 25
    assert Deadline.from_lambda_context(object()).remaining() == float("inf")


def test_rate_limiter_spends_the_burst_then_paces_requests() -> None:
    manual = ManualClock()
    limiter = RateLimiter(per_second=4, burst=2, clock=manual.clock)
    deadline = Deadline(None, manual.clock)
    started = manual.t
    assert all(limiter.acquire(deadline) for _ in range(10))
    # two from the burst, then eight at 4 per second
    assert manual.t - started == 2.0
    assert manual.slept == [0.25] * 8


def test_rate_limiter_refuses_when_the_wait_would_outlast_the_deadline() -> None:
    manual = ManualClock()
    limiter = RateLimiter(per_second=1, burst=1, clock=manual.clock)
    deadline = Deadline(0.5, manual.clock)
    assert limiter.acquire(deadline)
    assert not limiter.acquire(deadline)  # the next slot is 1 s away, 0.5 s are left
    assert manual.slept == []


def test_unlimited_rate_never_waits() -> None:
    manual = ManualClock()
    limiter = RateLimiter(per_second=0, clock=manual.clock)
    assert all(limiter.acquire(Deadline(0, manual.clock)) for _ in range(100))
    assert manual.slept == []
