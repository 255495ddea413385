"""Counters of the emulator's HTTP traffic."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Literal


class EmulatorStats:
    """Counters of HTTP traffic (calls of the Python API are not counted). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # routed requests per action, whatever the outcome
        self.items: Counter[str] = Counter()  # items in successful requests per action
        self.faults_injected: Counter[str] = Counter()  # per fault kind
        self.statuses: Counter[int] = Counter()  # responses per HTTP status
        self.auth_failures = 0
        self.connections = 0  # TCP connections accepted

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.items.clear()
            self.faults_injected.clear()
            self.statuses.clear()
            self.auth_failures = 0
            self.connections = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "items": dict(self.items),
                "faults_injected": dict(self.faults_injected),
                "statuses": dict(self.statuses),
                "auth_failures": self.auth_failures,
                "connections": self.connections,
            }

    def _add(self, counter: Literal["requests", "items", "faults_injected"], name: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[name] += n

    def _status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def _auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def _connection(self) -> None:
        with self._lock:
            self.connections += 1

    def __repr__(self) -> str:
        return f"EmulatorStats({self.snapshot()})"
