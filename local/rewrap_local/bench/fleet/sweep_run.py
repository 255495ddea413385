"""One run through the fleet path: the sweep container invoked in a mode while the rotate containers
poll the queue, until every message is acknowledged; and the warm-up before the measured runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from ..containers import Container
from .params import PREFIX, WARMUP, WARMUP_PER_CONTAINER, FleetParams, Seeded
from .phase import Phase
from .stack import FleetStack


class SweepRunner:
    def __init__(self, stack: FleetStack, params: FleetParams) -> None:
        self.stack = stack
        self.params = params

    def run(
        self,
        name: str,
        mode: str,
        seeded: Seeded,
        sweeper: Container,
        workers: Sequence[Container],
        prefix: str = PREFIX,
    ) -> Phase:
        """Sweep (in ``mode``) while the rotate containers poll; done when every message is acknowledged."""
        phase = Phase(mode, seeded.size)
        event: dict[str, Any] = {"targets": [f"{seeded.bucket}/{prefix}"]}
        if mode == "census":
            event.update(mode="census", runId=f"{seeded.bucket}-{name}")
        if mode == "incremental":  # a scheduled sweep: only what changed since the last listing
            event["incremental"] = True
        kms_before = self.stack.kms_requests()
        cpu_before = self.stack.server_cpu()
        for worker in workers:
            worker.start_polling(seeded.queue_url, self.params.batch)
        began = time.perf_counter()
        sweeper.conn.send(("invoke", ("sweep", event)))
        self._collect(phase, seeded, sweeper, workers, began)
        phase.seconds = time.perf_counter() - began
        for worker in workers:
            phase.invocations += worker.stop_polling()
        kms_after = self.stack.kms_requests()
        cpu_after = self.stack.server_cpu()
        phase.server_cpu = {server: round(cpu_after[server] - cpu_before[server], 2) for server in cpu_before}
        phase.kms = {a: n - kms_before.get(a, 0) for a, n in kms_after.items() if n - kms_before.get(a, 0)}
        parked = self.stack.queue_count(seeded.dead_letter_queue_url)
        if parked:
            phase.problems.append(f"{mode}: {parked} messages parked on the dead-letter queue")
        return phase

    def _collect(
        self, phase: Phase, seeded: Seeded, sweeper: Container, workers: Sequence[Container], began: float
    ) -> None:
        """The sweep's answer and the containers' invocations, until the sweep's messages are all acknowledged."""
        mode = phase.mode
        expected: int | None = None
        acked = 0
        idle = 0  # consecutive quiet waits with the queue empty
        conns = {worker.conn: worker for worker in workers} | {sweeper.conn: sweeper}
        while expected is None or acked < expected:
            ready = wait(list(conns), timeout=5)
            for conn in ready:
                kind, value = conn.recv()  # type: ignore[union-attr]
                if kind == "invoked":
                    phase.sweep = value
                    if "error" in value:
                        phase.problems.append(f"{mode} sweep failed: {value['error']}")
                        expected = acked
                    else:
                        expected = int(value["response"]["messages"])
                elif kind == "invocation":
                    phase.invocations.append(value)
                    acked += value["acked"]
                    if "error" in value:
                        phase.problems.append(f"{mode}: rotate invocation failed: {value['error']}")
            quiet = not ready and expected is not None and self.stack.queue_count(seeded.queue_url) == 0
            idle = idle + 1 if quiet else 0
            if idle >= 2:  # nothing in flight and nothing reported for 10 s: the rest went to the dead-letter queue
                phase.problems.append(f"{mode}: the queue emptied with {acked} of {expected} messages acknowledged")
                return
            if time.perf_counter() - began > self.params.phase_timeout_s:
                phase.problems.append(f"{mode}: {acked} of {expected} messages acknowledged after the timeout")
                return

    def warm_up(self, seeded: Seeded, sweeper: Container, workers: Sequence[Container]) -> list[str]:
        """Each rotate container rotates and counts its own warm-up objects (direct requests), then the
        sweep runs once in each mode over warmup/ through the queue; nothing of it is measured."""
        problems = []
        for index, worker in enumerate(workers):
            keys = [i.key for i in seeded.warmup[index * WARMUP_PER_CONTAINER : (index + 1) * WARMUP_PER_CONTAINER]]
            census = {"bucket": seeded.bucket, "keys": keys, "mode": "census", "runId": f"warmup-{index}"}
            for event in (census, {"bucket": seeded.bucket, "keys": keys}):
                answer = worker.invoke("rotate", event)
                if "error" in answer:
                    problems.append(f"warm-up invocation failed: {answer['error']}")
        for name, mode in (("warmup-census", "census"), ("warmup-rotate", "rotate")):
            problems += self.run(name, mode, seeded, sweeper, workers, WARMUP).problems
        return problems
