"""``make bench-fleet``: the census and the rotation through the fleet path, at growing bucket sizes.

On the embedded stack of ``make bench`` (moto and the NCP KMS emulator in child processes, the same
injected KMS and S3 latency), per size: a bucket of mixed objects (``make bench``'s mixed set: 70%
small JSON documents, 10% configs, 20% envelopes, half of them already current) is seeded, then

1. **rotation**: the sweep container is invoked (a rotation sweep); it lists the bucket and enqueues
   rotate requests; a pool of rotate containers (child processes, each with its own runtime, as Lambda
   runs them) receives SQS batches, invokes the rotate handler with real-shaped SQS events and deletes
   what was acknowledged;
2. **census**: the same with ``{"mode": "census"}``: census requests, one partial each, fetched and
   merged (``merge_run``); it is also the verification: the merged verdict must be SAFE and complete,
   with every seeded token counted at the newest version. ``--census-before`` adds a census run
   before the rotation, which must be NOT SAFE with exactly the seeded stale counts.

Before the measured runs each container is warmed up on objects of its own under ``warmup/``, so no
measured invocation pays for a container's first calls.

Counted for real, not estimated: S3 and SQS requests through botocore hooks on every container's
clients, KMS requests at the emulator. Memory: tracemalloc's peak per handler call. The census
counts are checked against what was seeded, and a sample of objects is read back directly; a wrong
result is reported and the exit status is 2. A size whose per-object figures drift from the
smallest size's by more than the tolerance gets a NOT FLAT verdict (exit status 0: a noisy machine
is not a broken benchmark).

Run: ``python -m rewrap_local.bench.fleet [--quick] [--sizes 1000 5000 20000] [--out docs/bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .cli import git_info, machine_info
from .constants import ACCESS_KEY, API_KEY, FAKE_AWS, REGION, REPO, SECRET_KEY
from .containers import RECEIVE_LIMIT, Container
from .datasets import Item, TokenPool, mixed_items, stratified
from .harness import _pseudo_random, unconverged
from .servers import Child, kms_main, moto_main

DEFAULT_SIZES = (1000, 5000, 20000)
QUICK_SIZES = (200, 1000)
PREFIX = "data/"
REPORTS_BUCKET = "rewrap-fleet-reports"
NEWEST = 2  # the seeded key is rotated once: v1 is stale, v2 current
ENVELOPE_BYTES = 4096
SPOT_CHECK = 300  # objects read back directly after the rotation, besides the census
# Per rotate container, objects under warmup/ it rotates and counts once before the measured runs, so no
# measured invocation pays for a container's first calls (botocore loads each operation's model lazily).
WARMUP_PER_CONTAINER = 20
WARMUP = "warmup/"


@dataclass
class FleetParams:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    workers: int = 4
    traced: int = 2  # rotate containers that trace memory (the sweep's always does)
    census_before: bool = False  # a census run before the rotation too (NOT SAFE, with the seeded counts)
    batch: int = 2  # messages per invocation (Lambda's BatchSize, ≤ 10 per ReceiveMessage here)
    keys_per_message: int = 25
    concurrency: int = 16
    kms_latency_ms: tuple[float, float] = (20.0, 40.0)
    s3_latency_ms: float = 3.0
    tolerance: float = 0.25
    seed: int = 7
    quick: bool = False
    phase_timeout_s: float = 1800.0


@dataclass
class Seeded:
    size: int
    bucket: str
    items: list[Item]
    queue_url: str
    dead_letter_queue_url: str
    warmup: list[Item]

    @property
    def stale_objects(self) -> int:
        return sum(not i.current for i in self.items)

    @property
    def stale_tokens(self) -> int:
        return sum(i.tokens for i in self.items if not i.current)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)


@dataclass
class Phase:
    """What one sweep → queue → rotate-containers run did, summed over its invocations."""

    mode: str
    objects: int
    seconds: float = 0.0
    sweep: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    kms: dict[str, int] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of moto and the emulator
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        calls = [self.sweep, *self.invocations]
        s3 = Counter[str]()
        sqs = Counter[str]()
        for call in calls:
            s3.update(call.get("s3", {}).get("ops", {}))
            sqs.update(call.get("sqs", {}).get("ops", {}))
            sqs.update(call.get("mapping", {}).get("ops", {}))
        peaks = [i["peak_bytes"] for i in self.invocations if "peak_bytes" in i]
        n = max(1, self.objects)
        kms_requests = sum(self.kms.values())
        return {
            "objects": self.objects,
            "seconds": round(self.seconds, 3),
            "objects_per_s": round(self.objects / self.seconds, 1) if self.seconds else 0.0,
            "ms_per_object": round(self.seconds * 1000 / n, 3),
            "messages": self.sweep.get("response", {}).get("messages", 0),
            "invocations": len(self.invocations),
            "sweep_seconds": round(self.sweep.get("seconds", 0.0), 3),
            "sweep_peak_mib": round(self.sweep.get("peak_bytes", 0) / 2**20, 2),
            "s3_requests": sum(s3.values()),
            "s3_per_object": round(sum(s3.values()) / n, 4),
            "s3_ops": dict(sorted(s3.items())),
            "kms_requests": kms_requests,
            "kms_per_object": round(kms_requests / n, 4),
            "kms_ops": dict(sorted(self.kms.items())),
            "sqs_requests": sum(sqs.values()),
            "sqs_per_object": round(sum(sqs.values()) / n, 4),
            "bytes_read_per_object": round(sum(c.get("s3", {}).get("bytes_read", 0) for c in calls) / n, 1),
            "cpu_s": round(sum(c.get("cpu_s", 0.0) for c in calls), 2),
            # None: no invocation of this run landed on a container that traces memory
            "peak_mib_max": round(max(peaks) / 2**20, 2) if peaks else None,
            "peak_mib_median": round(statistics.median(peaks) / 2**20, 2) if peaks else None,
            "traced_invocations": sum("peak_bytes" in i for i in self.invocations),
            "server_cpu_s": self.server_cpu,
            "invocation_s_median": _median(i["seconds"] for i in self.invocations),
            "invocation_cpu_s_median": _median(i["cpu_s"] for i in self.invocations),
            "failed_items": sum(i.get("failed", 0) for i in self.invocations),
        }


Hook = Callable[["FleetBench"], None]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(values: Iterable[float]) -> float:
    listed = list(values)
    return round(statistics.median(listed), 3) if listed else 0.0


class FleetBench:
    def __init__(self, params: FleetParams, log: Callable[[str], None]) -> None:
        import boto3
        from botocore.config import Config

        self.params = params
        self.log = log
        self.moto = Child(moto_main)
        self.kms = Child(kms_main, params.seed)
        self.moto_url: str = self.moto.hello
        self.kms_url, self.key_tag = self.kms.hello
        self.kms.call("latency", params.kms_latency_ms[0] / 1000, params.kms_latency_ms[1] / 1000)
        session = boto3.session.Session(**FAKE_AWS)
        config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5})
        self.admin = session.client("s3", endpoint_url=self.moto_url, config=config)  # unmetered, no latency
        self.sqs = session.client("sqs", endpoint_url=self.moto_url, config=config)
        self._create_bucket(REPORTS_BUCKET)
        secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
        secrets = session.client("secretsmanager", endpoint_url=self.moto_url)
        self.secret_id = secrets.create_secret(Name="rewrap/ncp-kms-fleet", SecretString=secret)["ARN"]
        self.pool = TokenPool()
        self.before_rotation: Hook | None = None
        self.envelope_body = _pseudo_random(ENVELOPE_BYTES)

    def close(self) -> None:
        self.kms.stop()
        self.moto.stop()

    # --- seeding -------------------------------------------------------------------------------------
    def make_tokens(self) -> None:
        """Every size's tokens: the old ones before the key's rotation, the current ones after it."""
        counting = TokenPool()
        for size in self.params.sizes:
            self._items(size, counting)
        self.pool.old = self.kms.call("encrypt", self.key_tag, counting.wanted[False])
        self.kms.call("rotate", self.key_tag)
        self.pool.new = self.kms.call("encrypt", self.key_tag, counting.wanted[True])

    def _items(self, size: int, pool: TokenPool) -> tuple[list[Item], list[Item]]:
        """The measured objects and the warm-up objects of one size (the same for a seed)."""
        rng = random.Random(self.params.seed + size)
        items = mixed_items(size, pool, rng, prefix=PREFIX, envelope_bytes=ENVELOPE_BYTES)
        warmup = mixed_items(WARMUP_PER_CONTAINER * self.params.workers, pool, rng, prefix=WARMUP)
        return items, warmup

    def seed(self, size: int) -> Seeded:
        items, warmup = self._items(size, self.pool)
        bucket = f"rewrap-fleet-{size}"
        self._create_bucket(bucket)

        objects = [
            (i.key, self.envelope_body if i.envelope else i.body, i.content_type, i.metadata) for i in items + warmup
        ]
        for start in range(0, len(objects), 2000):  # straight into moto's backend: seconds, not minutes
            self.moto.call("seed", bucket, objects[start : start + 2000])
        dlq = self.sqs.create_queue(QueueName=f"{bucket}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        queue = self.sqs.create_queue(QueueName=bucket, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        return Seeded(size, bucket, items, queue, dlq, warmup)

    def _create_bucket(self, bucket: str) -> None:
        self.admin.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": REGION},  # type: ignore[typeddict-item]
            ObjectOwnership="BucketOwnerEnforced",
        )

    # --- the containers ------------------------------------------------------------------------------
    def environment(self, seeded: Seeded) -> dict[str, str]:
        """What the deployed functions would see, pointed at the embedded stack."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "NCP_KMS_ENDPOINT": self.kms_url,
            "NCP_KMS_KEY_TAG": self.key_tag,
            "NCP_KMS_SECRET_ID": self.secret_id,
            "REWRAP_BUCKETS": seeded.bucket,
            "REWRAP_QUEUE_URL": seeded.queue_url,
            "REWRAP_DEAD_LETTER_QUEUE_URL": seeded.dead_letter_queue_url,
            "REWRAP_REPORT_PREFIX": f"s3://{REPORTS_BUCKET}/{seeded.bucket}/",
            "REWRAP_SWEEP_KEYS_PER_MESSAGE": str(self.params.keys_per_message),
            "REWRAP_CONCURRENCY": str(self.params.concurrency),
            # NCP's budget shared by the containers that may run at once, as the template derives it
            "REWRAP_MAX_CONTAINERS": str(self.params.workers),
            "REWRAP_TEXT_SUFFIXES": ".json",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "rewrap",
            "POWERTOOLS_METRICS_NAMESPACE": "Rewrap",
        }

    def run_phase(
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
        kms_before = self.kms.call("stats")["requests"]
        cpu_before = {"moto": cpu_seconds(self.moto.process.pid), "kms": cpu_seconds(self.kms.process.pid)}
        for worker in workers:
            worker.start_polling(seeded.queue_url, self.params.batch)
        began = time.perf_counter()
        sweeper.conn.send(("invoke", ("sweep", event)))
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
            idle = idle + 1 if not ready and expected is not None and self._queue_empty(seeded.queue_url) else 0
            if idle >= 2:  # nothing in flight and nothing reported for 10 s: the rest went to the dead-letter queue
                phase.problems.append(f"{mode}: the queue emptied with {acked} of {expected} messages acknowledged")
                break
            if time.perf_counter() - began > self.params.phase_timeout_s:
                phase.problems.append(f"{mode}: {acked} of {expected} messages acknowledged after the timeout")
                break
        phase.seconds = time.perf_counter() - began
        for worker in workers:
            phase.invocations += worker.stop_polling()
        kms_after = self.kms.call("stats")["requests"]
        phase.server_cpu = {
            "moto": round(cpu_seconds(self.moto.process.pid) - cpu_before["moto"], 2),
            "kms": round(cpu_seconds(self.kms.process.pid) - cpu_before["kms"], 2),
        }
        phase.kms = {a: n - kms_before.get(a, 0) for a, n in kms_after.items() if n - kms_before.get(a, 0)}
        parked = self._queue_count(seeded.dead_letter_queue_url)
        if parked:
            phase.problems.append(f"{mode}: {parked} messages parked on the dead-letter queue")
        return phase

    def _queue_count(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    def _queue_empty(self, url: str) -> bool:
        return self._queue_count(url) == 0

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
            problems += self.run_phase(name, mode, seeded, sweeper, workers, WARMUP).problems
        return problems

    # --- census runs ---------------------------------------------------------------------------------
    def merge(self, seeded: Seeded, run_id: str) -> tuple[Any, dict[str, Any]]:
        """Fetch the run's partials and merge them (``merge_run``, timed on its own: median of 3)."""
        from rewrap.census_runs import merge_run

        folder = f"{seeded.bucket}/census/{run_id}/"
        started = time.perf_counter()
        keys = [
            item["Key"]
            for page in self.admin.get_paginator("list_objects_v2").paginate(Bucket=REPORTS_BUCKET, Prefix=folder)
            for item in page.get("Contents", [])
        ]

        def fetch(key: str) -> tuple[str, bytes]:
            return key.rpartition("/")[2], self.admin.get_object(Bucket=REPORTS_BUCKET, Key=key)["Body"].read()

        with ThreadPoolExecutor(16) as pool:
            records = list(pool.map(fetch, keys))
        fetch_s = time.perf_counter() - started
        url = f"s3://{REPORTS_BUCKET}/{folder}"
        timings = []
        for _ in range(3):
            began = time.perf_counter()
            run = merge_run(records, url, NEWEST, None)
            timings.append(time.perf_counter() - began)
        return run, {"partials": run.partials, "fetch_s": round(fetch_s, 3), "merge_s": round(min(timings), 4)}

    def rotation_statuses(self, seeded: Seeded) -> Counter[str]:
        """The measured objects' statuses in the rotate invocations' audit reports."""
        paginator = self.admin.get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=REPORTS_BUCKET, Prefix=f"{seeded.bucket}/")
            for item in page.get("Contents", [])
            if item["Key"].endswith(".jsonl")
        ]

        def read(key: str) -> list[dict[str, Any]]:
            body = self.admin.get_object(Bucket=REPORTS_BUCKET, Key=key)["Body"].read()
            return [json.loads(line) for line in body.splitlines()]

        with ThreadPoolExecutor(16) as pool:
            records = [r for report in pool.map(read, keys) for r in report]
        return Counter(
            str(r.get("status")) for r in records if r.get("source") == "rotate" and r.get("key", "").startswith(PREFIX)
        )

    # --- one size ------------------------------------------------------------------------------------
    def measure(self, size: int) -> dict[str, Any]:
        started = time.perf_counter()
        seeded = self.seed(size)
        seed_s = time.perf_counter() - started
        self.log(f"  {size:,} objects ({seeded.tokens:,} tokens) seeded in {seed_s:.1f} s")
        env = self.environment(seeded)
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
            problems = self.warm_up(seeded, sweeper, workers)
            phases = [("rotate", "rotate"), ("census", "census")]
            if self.params.census_before:
                phases.insert(0, ("census_before", "census"))
            for name, mode in phases:
                if mode == "rotate" and self.before_rotation is not None:
                    self.before_rotation(self)
                phase = self.run_phase(name, mode, seeded, sweeper, workers)
                figures = phase.figures()
                problems += phase.problems
                if mode == "census":
                    run, merge = self.merge(seeded, phase.sweep.get("response", {}).get("runId", "?"))
                    figures.update(merge)
                    problems += self.check_census(name, run, seeded, figures)
                else:
                    figures["statuses"] = dict(self.rotation_statuses(seeded))
                    problems += self.check_rotation(seeded, figures)
                out[name] = figures
                self.log(
                    f"    {name}: {figures['objects_per_s']:,} objects/s, S3 {figures['s3_per_object']}/object, "
                    f"KMS {figures['kms_per_object']}/object, peak {figures['peak_mib_max']} MiB per invocation"
                    f" ({figures['traced_invocations']} of {figures['invocations']} invocations traced)"
                )
            problems += self.spot_check(seeded, out)
        finally:
            for container in containers:
                container.close()
        out["problems"] = problems
        out["seconds"] = round(time.perf_counter() - started, 1)
        out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: how busy it was
        return out

    def spot_check(self, seeded: Seeded, out: dict[str, Any]) -> list[str]:
        """A sample read back directly, not through the census: every token at the newest version, and
        every one decrypts (the emulator opens it)."""
        sample = stratified(seeded.items, SPOT_CHECK)
        tokens: list[str] = []
        wrong = unconverged(self.admin, seeded.bucket, sample, newest=NEWEST, tokens=tokens)
        undecryptable = self.kms.call("undecryptable", self.key_tag, tokens)
        out["spot_check"] = {"objects": len(sample), "tokens": len(tokens), "wrong": wrong[:10]}
        out["spot_check"]["undecryptable"] = undecryptable
        problems = []
        if wrong:
            problems.append(f"{len(wrong)} of {len(sample)} objects read back not all at v{NEWEST}: {wrong[:3]}")
        if undecryptable:
            problems.append(f"{undecryptable} of {len(tokens)} tokens read back do not decrypt")
        return problems

    def check_census(self, name: str, run: Any, seeded: Seeded, figures: dict[str, Any]) -> list[str]:
        """The merged census against what was seeded: before the rotation NOT SAFE with exactly the
        seeded stale counts, after it SAFE with every token at the newest version."""
        code, lines = run.judge_lines()
        census = run.census
        versions = {v: c.tokens for v, c in census.by_key.get(self.key_tag, {}).items() if c.tokens}
        figures.update(
            verdict=census.judge().verdict,
            exit_code=code,
            complete=run.complete,
            accounted=run.accounted,
            census_objects=census.objects,
            tokens_by_version={f"v{v}": n for v, n in sorted(versions.items())},
            headline=lines[0],
        )
        problems = []
        if not run.complete or run.accounted != seeded.size or census.objects != seeded.size:
            problems.append(f"{name}: run incomplete: {census.objects} of {seeded.size} objects ({lines[-1].strip()})")
        if name == "census_before":
            want = {1: seeded.stale_tokens, NEWEST: seeded.tokens - seeded.stale_tokens}
            stale = (census.stale_objects, census.stale_tokens)
            if figures["verdict"] != "NOT SAFE" or stale != (seeded.stale_objects, seeded.stale_tokens):
                problems.append(f"census before the rotation: {lines[0]!r}, seeded {seeded.stale_tokens} stale tokens")
        else:
            want = {NEWEST: seeded.tokens}
            if figures["verdict"] != "SAFE" or code != 0:
                problems.append(f"census after the rotation is not SAFE: {lines[0]!r}")
        if versions != want:
            problems.append(f"{name}: tokens by version {versions}, seeded {want}")
        if figures["kms_requests"]:
            problems.append(f"{name}: a census sent {figures['kms_requests']} KMS requests (it needs none)")
        return problems

    def check_rotation(self, seeded: Seeded, figures: dict[str, Any]) -> list[str]:
        statuses = figures["statuses"]
        want = {"rotated": seeded.stale_objects, "current": seeded.size - seeded.stale_objects}
        if statuses != want:
            return [f"rotation statuses {statuses}, expected {want}"]
        return []


# --- figures across sizes -------------------------------------------------------------------------
# (phase, figure, label): the per-object costs that must stay flat as the bucket grows
FLAT_FIGURES = (
    ("census", "ms_per_object", "census time/object"),
    ("census", "s3_per_object", "census S3 req/object"),
    ("census", "peak_mib_median", "census peak MiB/invocation"),
    ("rotate", "ms_per_object", "rotation time/object"),
    ("rotate", "s3_per_object", "rotation S3 req/object"),
    ("rotate", "kms_per_object", "rotation KMS req/object"),
    ("rotate", "peak_mib_median", "rotation peak MiB/invocation"),
    ("census", "merge_ms_per_1000", "merge time/1000 objects"),
)


def flatness(sizes: dict[int, dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Each per-object figure at each size over the smallest size's. Flat: all within ±tolerance;
    linear: none grows beyond +tolerance (a figure that falls with size, as fixed per-run costs
    spread over more objects, does not make the cost grow faster than the objects)."""
    for figures in sizes.values():
        census = figures["census"]
        census["merge_ms_per_1000"] = round(census["merge_s"] * 1e6 / max(1, figures["objects"]), 3)
    ordered = sorted(sizes)
    base = sizes[ordered[0]]
    ratios: dict[str, dict[str, float | None]] = {}
    compared: list[tuple[float, str]] = []
    for phase, name, label in FLAT_FIGURES:
        ratios[label] = {}
        for size in ordered:
            reference, value = base[phase][name], sizes[size][phase][name]
            if reference is None or value is None:  # not measured at one of the sizes: not compared
                ratios[label][str(size)] = None
                continue
            ratio = round(value / reference, 3) if reference else (1.0 if not value else float("inf"))
            ratios[label][str(size)] = ratio
            if size != ordered[0]:
                compared.append((ratio, f"{label} at {size:,}"))
    if not compared:
        return {"flat": False, "linear": False, "verdict": "one size only: nothing to compare", "ratios": ratios}
    (low, lowest), (high, highest) = min(compared), max(compared)
    flat = high <= 1 + tolerance and low >= 1 - tolerance
    linear = high <= 1 + tolerance
    smallest = f"the {ordered[0]:,}-object figure"
    if flat:
        verdict = f"FLAT within ±{tolerance:.0%}: every per-object figure between {low:.2f}x and {high:.2f}x {smallest}"
    elif linear:
        verdict = (
            f"NO GROWTH beyond +{tolerance:.0%} (cost linear in objects): the highest is {highest}, {high:.2f}x "
            f"{smallest}; NOT FLAT within ±{tolerance:.0%} only because {lowest} falls to {low:.2f}x"
        )
    else:
        verdict = f"NOT FLAT: {highest} grows to {high:.2f}x {smallest} (beyond +{tolerance:.0%})"
    return {"flat": flat, "linear": linear, "verdict": verdict, "ratios": ratios, "highest": highest, "lowest": lowest}


def rerender(out: Path) -> dict[str, Any]:
    """The last record of ``out/fleet.jsonl`` judged again and written to fleet.md and fleet.png."""
    from .fleet_render import write_outputs

    record: dict[str, Any] = json.loads((out / "fleet.jsonl").read_text().splitlines()[-1])
    sizes = {int(size): figures for size, figures in record["sizes"].items()}
    record["flatness"] = flatness(sizes, record["parameters"]["tolerance"])
    write_outputs(out, record, append=False)
    return record


# --- main -------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rewrap_local.bench.fleet", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"objects per run (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (about 2 minutes)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench", help="fleet.jsonl, fleet.md, fleet.png")
    parser.add_argument("--workers", type=int, default=4, help="rotate containers polling the queue")
    parser.add_argument("--traced", type=int, default=2, help="rotate containers that trace memory (tracemalloc)")
    parser.add_argument("--batch", type=int, default=2, help=f"messages per invocation (1-{RECEIVE_LIMIT})")
    parser.add_argument("--keys-per-message", type=int, default=25, help="REWRAP_SWEEP_KEYS_PER_MESSAGE")
    parser.add_argument("--concurrency", type=int, default=16, help="REWRAP_CONCURRENCY per container")
    parser.add_argument("--kms-latency-ms", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument("--s3-latency-ms", type=float, default=3.0)
    parser.add_argument("--tolerance", type=float, default=0.25, help="flatness verdict: ±this fraction")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--census-before", action="store_true", help="a census run before the rotation too (must be NOT SAFE)"
    )
    parser.add_argument("--rerender", action="store_true", help="judge and render the last record again, no run")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= RECEIVE_LIMIT:
        parser.error(f"--batch must be 1-{RECEIVE_LIMIT}")
    return args


def run(params: FleetParams, log: Callable[[str], None], before_rotation: Hook | None = None) -> dict[str, Any]:
    """Every size measured; ``before_rotation`` runs before each rotation run (a test injects faults there)."""
    began = time.perf_counter()
    machine = machine_info()
    bench = FleetBench(params, log)
    sizes: dict[int, dict[str, Any]] = {}
    try:
        bench.before_rotation = before_rotation
        bench.make_tokens()
        for size in params.sizes:
            log(f"fleet bench: {size:,} objects, {params.workers} rotate containers")
            sizes[size] = bench.measure(size)
    finally:
        bench.close()
    problems = [f"{size:,} objects: {p}" for size, f in sizes.items() for p in f["problems"]]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine,
        "parameters": {**params.__dict__, "sizes": list(params.sizes)},
        "sizes": {str(size): figures for size, figures in sizes.items()},
        "flatness": flatness(sizes, params.tolerance),
        "problems": problems,
        "duration_s": round(time.perf_counter() - began, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from .fleet_render import print_summary, write_outputs

    args = parse_args(argv)
    if args.rerender:
        print_summary(rerender(args.out))
        return 0
    params = FleetParams(
        sizes=tuple(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)),
        workers=args.workers,
        traced=args.traced,
        batch=args.batch,
        keys_per_message=args.keys_per_message,
        concurrency=args.concurrency,
        kms_latency_ms=tuple(args.kms_latency_ms),  # type: ignore[arg-type]
        s3_latency_ms=args.s3_latency_ms,
        tolerance=args.tolerance,
        seed=args.seed,
        quick=args.quick,
        census_before=args.census_before,
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    record = run(params, log)
    write_outputs(args.out, record)
    print_summary(record)
    if record["problems"]:
        print(f"\nBENCHMARK FOUND WRONG RESULTS: {len(record['problems'])} problem(s):", file=sys.stderr)
        for problem in record["problems"][:20]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
