"""One size end to end: seeded, the containers started and warmed up, the rotation and census runs
measured and checked, a sample read back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..containers import Container
from .census_merge import RunPartials, fetch_partials, time_merges
from .checks import check_census, check_rotation, check_steady, rotation_statuses, spot_check
from .params import FleetParams, Seeded
from .seeding import Seeder
from .stack import FleetStack
from .sweep_run import SweepRunner

Hook = Callable[[FleetStack], None]


class FleetBench:
    def __init__(self, params: FleetParams, log: Callable[[str], None]) -> None:
        self.params = params
        self.log = log
        self.stack = FleetStack(params)
        self.seeder = Seeder(self.stack, params)
        self.runner = SweepRunner(self.stack, params)
        self.before_rotation: Hook | None = None
        # (size, phase) → the census run's partials, kept for the merges timed once every size has run
        self.census_runs: dict[tuple[int, str], RunPartials] = {}

    def close(self) -> None:
        self.stack.close()

    def make_tokens(self) -> None:
        self.seeder.make_tokens()

    def measure(self, size: int) -> dict[str, Any]:
        started = time.perf_counter()
        seeded = self.seeder.seed(size)
        seed_s = time.perf_counter() - started
        self.log(f"  {size:,} objects ({seeded.tokens:,} tokens) seeded in {seed_s:.1f} s")
        env = self.stack.environment(seeded)
        latency = self.params.s3_latency_ms / 1000
        containers = [Container("sweep", env, latency)]
        containers += [
            Container(f"rotate-{i}", env, latency, trace_memory=i < self.params.traced)
            for i in range(self.params.workers)
        ]
        try:
            init = [c.ready() for c in containers]
            sweeper, workers = containers[0], containers[1:]
            out: dict[str, Any] = {
                "objects": size,
                "tokens": seeded.tokens,
                "stale_objects": seeded.stale_objects,
                "stale_tokens": seeded.stale_tokens,
                "seed_s": round(seed_s, 1),
                "container_init_s": max(i["init_s"] for i in init),
            }
            problems = self.runner.warm_up(seeded, sweeper, workers)
            problems += self.measure_phases(seeded, sweeper, workers, out)
            problems += spot_check(self.stack, seeded, out)
        finally:
            for container in containers:
                container.close()
        out["problems"] = problems
        out["seconds"] = round(time.perf_counter() - started, 1)
        out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: how busy it was
        return out

    def time_merges(self, sizes: dict[int, dict[str, Any]]) -> None:
        """Every census run's merge timed, all sizes interleaved, into its figures."""
        for (size, name), timing in time_merges(self.census_runs, self.params.merge_repeats).items():
            sizes[size][name].update(timing)

    def measure_phases(
        self, seeded: Seeded, sweeper: Container, workers: Sequence[Container], out: dict[str, Any]
    ) -> list[str]:
        """The rotation run and the census run after it (and one before, if asked), each checked."""
        problems: list[str] = []
        phases = [("rotate", "rotate"), ("census", "census")]
        if self.params.census_before:
            phases.insert(0, ("census_before", "census"))
        for name, mode in phases:
            if mode == "rotate" and self.before_rotation is not None:
                self.before_rotation(self.stack)
            phase = self.runner.run(name, mode, seeded, sweeper, workers)
            figures = phase.figures()
            problems += phase.problems
            if mode == "census":
                run_id = phase.sweep.get("response", {}).get("runId", "?")
                partials = fetch_partials(self.stack, seeded, run_id)
                self.census_runs[seeded.size, name] = partials
                run = partials.merge()
                figures.update(partials=run.partials, fetch_s=round(partials.fetch_s, 3))
                problems += check_census(self.stack, name, run, seeded, figures)
            else:
                figures["statuses"] = dict(rotation_statuses(self.stack, seeded))
                problems += check_rotation(seeded, figures)
            out[name] = figures
            self.log(
                f"    {name}: {figures['objects_per_s']:,} objects/s, S3 {figures['s3_per_object']}/object, "
                f"KMS {figures['kms_per_object']}/object, peak {figures['peak_mib_max']} MiB per invocation"
                f" ({figures['traced_invocations']} of {figures['invocations']} invocations traced)"
            )
        return problems + self.measure_steady(seeded, sweeper, workers, out)

    def measure_steady(
        self, seeded: Seeded, sweeper: Container, workers: Sequence[Container], out: dict[str, Any]
    ) -> list[str]:
        """After the rotation, two scheduled (incremental) sweeps: the first takes a second look at what the
        rotation wrote (and publishes its run's verdict), the second finds the target converged."""
        time.sleep(1.05 - time.time() % 1)  # S3 keeps LastModified to the second: the next one
        for name in ("second_look", "steady"):
            figures = self.runner.run(name, "incremental", seeded, sweeper, workers).figures()
            out[name] = figures
            self.log(
                f"    {name}: {figures['scope']}, {figures['enqueued']:,} enqueued, S3 {figures['s3_per_object']}"
                f"/object {figures['s3_ops']}"
            )
        return check_steady(seeded, out)
