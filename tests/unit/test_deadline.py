"""Deadline and RateLimiter on a hand-driven clock: no test here waits or reads the wall clock."""

from __future__ import annotations

from rewrap.deadline import AdaptiveRateLimiter, Deadline, RateLimiter
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


def test_adaptive_rate_starts_at_the_ceiling_halves_on_429_and_recovers_additively() -> None:
    manual = ManualClock()
    limiter = AdaptiveRateLimiter(40, recovery=4, cut_interval=1.0, clock=manual.clock)
    deadline = Deadline(None, manual.clock)
    # at the ceiling: 40 requests in the first second (the burst), then 1/40 s apart
    assert all(limiter.acquire(deadline) for _ in range(41))
    assert manual.slept == [0.025] and limiter.per_second == 40

    # a burst of 429s in flight halves the rate once, not once per reply
    for _ in range(5):
        limiter.throttled()
    assert limiter.per_second == 20 and limiter.cuts == 1
    manual.slept.clear()
    assert limiter.acquire(deadline)  # no burst after a throttle: the next slot is paced
    assert manual.slept and 0.04 < manual.slept[0] <= 0.05
    # a second throttle a second later halves again
    manual.t += 1.0
    limiter.acquire(deadline)
    limiter.throttled()
    # (20 + 4 x 1.05 s of recovery since the cut) / 2
    assert abs(limiter.per_second - 12.1) < 1e-6 and limiter.cuts == 2

    # then it recovers by 4 requests/s per second, back to the ceiling and no further
    manual.t += 2.5
    limiter.acquire(deadline)
    assert abs(limiter.per_second - 22.1) < 1e-6
    manual.t += 100
    limiter.acquire(deadline)
    assert limiter.per_second == 40


def test_adaptive_rate_never_falls_below_its_floor() -> None:
    manual = ManualClock()
    limiter = AdaptiveRateLimiter(10, floor=2, cut_interval=0, clock=manual.clock)
    for _ in range(20):
        limiter.throttled()
    assert limiter.per_second == 2


def test_a_fixed_rate_ignores_throttles() -> None:
    limiter = RateLimiter(per_second=5)
    limiter.throttled()
    assert limiter.per_second == 5
