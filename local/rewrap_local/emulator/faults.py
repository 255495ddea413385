"""Injected faults and latency: what a real NCP (or the network in between) may do to a request.

Each queued fault is consumed by one matching request and counted in ``stats.faults_injected``.
``throttle``, ``server-error``, ``timeout``, ``reset`` and ``non-json`` hit a request after authentication;
``short-reply``, ``extra-item``, ``bad-pattern``, ``lower-version`` and ``corrupt`` rewrite a successful
reply (they wait in the queue while the matching requests fail). On a single-string reply ``short-reply``
drops the field and ``extra-item`` turns it into a 2-item array.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RATE_LIMITED, UNEXPECTED
from .keys import Key, b64
from .routes import ACTION_ALIASES
from .stats import EmulatorStats

if TYPE_CHECKING:
    from .server import Handler
    from .wire import Reply

FAULT_KINDS: dict[str, tuple[str, ...]] = {
    # kind -> accepted parameters
    "throttle": ("retry_after",),
    "server-error": ("status",),
    "timeout": ("seconds",),
    "reset": (),
    "non-json": (),
    "short-reply": (),
    "extra-item": (),
    "bad-pattern": (),
    "lower-version": (),
    "corrupt": (),
}
PRE_FAULTS = frozenset({"throttle", "server-error", "timeout", "reset", "non-json"})
SERVER_ERROR_STATUSES = (500, 502, 503, 504)
BAD_PATTERN_ITEM = "ncpkms:v0:!!not-a-token!!"
NON_JSON_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n"


@dataclass
class Fault:
    kind: str
    remaining: int
    action: str | None
    params: dict[str, Any]
    key_tag: str | None = None


class FaultQueue:
    """Queued faults and the latency every request gets. Thread-safe; sleeps end when ``stopping`` is set."""

    def __init__(self, rng: random.Random, stats: EmulatorStats, stopping: threading.Event) -> None:
        self._rng = rng
        self._stats = stats
        self._stopping = stopping
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency: tuple[float, float] | None = None

    def inject(self, kind: str, times: int, action: str | None, key_tag: str | None, params: dict[str, Any]) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        unknown = set(params) - set(FAULT_KINDS[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if kind == "server-error":
            params.setdefault("status", 500)
            if params["status"] not in SERVER_ERROR_STATUSES:
                raise ValueError("server-error status must be 500, 502, 503 or 504")
        if kind == "timeout":
            params.setdefault("seconds", 10.0)
        if action is not None:
            action = ACTION_ALIASES.get(action, action)
        with self._lock:
            self._faults.append(Fault(kind, times, action, dict(params), key_tag))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[tuple[str, int, str | None]]:
        with self._lock:
            return [(f.kind, f.remaining, f.action) for f in self._faults]

    def take(self, action: str, pre: bool, tag: str) -> Fault | None:
        """Consume the first queued fault matching ``action`` and ``tag`` if it belongs to this phase."""
        with self._lock:
            for fault in self._faults:
                if fault.action is not None and fault.action != action:
                    continue
                if fault.key_tag is not None and fault.key_tag.lower() != tag.lower():
                    continue
                if (fault.kind in PRE_FAULTS) != pre:
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                break
            else:
                return None
        self._stats._add("faults_injected", fault.kind)
        return fault

    # --- latency -------------------------------------------------------------------------------------
    def set_latency(self, min_s: float, max_s: float | None = None) -> None:
        max_s = min_s if max_s is None else max_s
        if min_s < 0 or max_s < min_s:
            raise ValueError("need 0 <= min_s <= max_s")
        with self._lock:
            self._latency = (min_s, max_s) if max_s > 0 else None

    def delay(self) -> None:
        with self._lock:
            latency = self._latency
        if latency is not None:
            self.sleep(self._rng.uniform(*latency) if latency[1] > latency[0] else latency[0])

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def act_before(handler: Handler, fault: Fault, sleep: Callable[[float], None]) -> bool:
    """Act out a fault that hits before the request is processed; False: carry on normally."""
    if fault.kind == "throttle":
        retry_after = fault.params.get("retry_after")
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        handler.reply_json(429, RATE_LIMITED, headers)
    elif fault.kind == "server-error":
        handler.reply_json(int(fault.params["status"]), UNEXPECTED)
    elif fault.kind == "timeout":
        sleep(float(fault.params["seconds"]))
        return False
    elif fault.kind == "reset":
        handler.reset()
    elif fault.kind == "non-json":
        handler.reply(200, NON_JSON_BODY, "text/html; charset=utf-8")
    return True


def apply_after(fault: Fault, reply: Reply, seal: Callable[[Key, bytes, bytes | None], str]) -> None:
    """Rewrite a successful reply as a post-processing fault says."""
    items = reply.items
    if fault.kind == "short-reply":
        items.pop()
    elif fault.kind == "extra-item":
        items.append(items[-1])
        reply.as_list = True
    elif fault.kind == "bad-pattern":
        items[0] = BAD_PATTERN_ITEM
    elif fault.kind == "lower-version" and reply.tokens:
        lower = max(1, reply.input_versions[0] - 1)
        items[0] = f"ncpkms:v{lower}:" + items[0].split(":", 2)[2]
    elif fault.kind == "corrupt":
        other = bytes(b ^ 0xA5 for b in reply.plaintexts[0]) or b"\x00"
        items[0] = seal(reply.key, other, reply.context) if reply.tokens else b64(other)
