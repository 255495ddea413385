"""Running one step of the engine over many items on a shared thread pool."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from rewrap.deadline import Deadline
from rewrap.errors import RetryableError, RewrapError

# Logged under the engine's name, which the steps belong to.
log = logging.getLogger("rewrap.core.engine")

T = TypeVar("T")
R = TypeVar("R")


class Runner:
    """Runs a step over many items on the shared pool; a step's RewrapError becomes its outcome."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool

    def each(
        self, step: Callable[[T, Deadline], R], items: Iterable[T], deadline: Deadline
    ) -> list[tuple[T, R | RewrapError]]:
        futures = [(item, self.pool.submit(_guarded, step, item, deadline)) for item in items]
        return [(item, future.result()) for item, future in futures]


def _guarded(step: Callable[[T, Deadline], R], item: T, deadline: Deadline) -> R | RewrapError:
    try:
        return step(item, deadline)
    except RewrapError as error:
        return error
    except Exception as exc:  # a bug must cost a retry, never an object
        log.exception("unexpected error in %s", getattr(step, "__name__", "step"))
        return RetryableError(f"internal error ({type(exc).__name__})", code="internal-error")
