"""Running one step of the engine over many items on a shared pool of threads.

The engine reads the next chunk of objects while the one before waits for KMS; its KMS requests and
writes go ahead of those reads (``Runner.each(..., first=True)``), so an object's time from read to write
stays short and the threads never idle while there is work.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from rewrap.deadline import Deadline
from rewrap.errors import RetryableError, RewrapError

# Logged under the engine's name, which the steps belong to.
log = logging.getLogger("rewrap.core.engine")

T = TypeVar("T")
R = TypeVar("R")
_FIRST, _NEXT, _STOP = 0, 1, 2


class Pool:
    """A fixed number of threads taking work in order of priority, then of submission."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Future[Any] | None, Callable[[], Any] | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], R], *, first: bool = False) -> Future[R]:
        future: Future[R] = Future()
        self._queue.put((_FIRST if first else _NEXT, next(self._order), future, call))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, call = self._queue.get()
            if future is None or call is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # noqa: BLE001 (handed to whoever waits on the future)
                    future.set_exception(exc)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), None, None))
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.shutdown()


class Runner:
    """Runs a step over many items on the shared pool; a step's RewrapError becomes its outcome."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def each(
        self, step: Callable[[T, Deadline], R], items: Iterable[T], deadline: Deadline, *, first: bool = False
    ) -> list[tuple[T, R | RewrapError]]:
        """``step`` on every item, in parallel; ``first`` puts these ahead of work waiting without it."""
        futures = [(item, self.pool.submit(_bound(step, item, deadline), first=first)) for item in items]
        return [(item, future.result()) for item, future in futures]


def _bound(step: Callable[[T, Deadline], R], item: T, deadline: Deadline) -> Callable[[], R | RewrapError]:
    return lambda: _guarded(step, item, deadline)


def _guarded(step: Callable[[T, Deadline], R], item: T, deadline: Deadline) -> R | RewrapError:
    try:
        return step(item, deadline)
    except RewrapError as error:
        return error
    except Exception as exc:  # a bug must cost a retry, never an object
        log.exception("unexpected error in %s", getattr(step, "__name__", "step"))
        return RetryableError(f"internal error ({type(exc).__name__})", code="internal-error")
