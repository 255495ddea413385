"""``make bench-path``: what rotating one object costs in S3 requests and wall time, through the SQS route.

The set: 240 small JSON documents of 1-3 tokens, 4 NDJSON files of 500 tokens and 40 envelopes of 64 KiB,
every token at the old key version; no text suffixes declared; KMS answers in 20 ms, every S3 request of
every client waits 3 ms more. For each kind of bucket (``BucketOwnerEnforced``, S3's default since 2023,
and a legacy bucket whose ACLs apply) and each round, in the same run:

* **floor**: one GET and one PUT per text object, one GET and one CopyObject per envelope, 16 at a time,
  with a bare boto3 client: what no rotator can avoid;
* **rewrap**: the rotate route on one SQS event carrying the sweep's rotate requests (100 keys each, with
  the newest version the sweep probed), in a fresh container.

It prints the S3 requests per rotated object by operation, rewrap's wall time over the floor's (medians of
the rounds), the client CPU per rotated object (this process: rewrap's engine and botocore, against the
floor's bare boto3), the servers' CPU, and the read-to-write window: per object, from the response of its
last read (GET or HEAD) to its write being sent, the time in which a metadata-only change by another writer
would not be seen on the PutObject path. ``--localstack`` runs against the LocalStack at
``REWRAP_TEST_S3_ENDPOINT`` (``make bench-path-localstack``) instead of a moto server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rewrap_local.stack import ACCESS_KEY, API_KEY, FAKE_AWS, REGION, SECRET_KEY

from .cli import git_info
from .constants import REPO
from .contenders import CpuClock
from .datasets import Item, TokenPool, path_items
from .harness import _pseudo_random, unconverged
from .meter import Meter
from .servers import Child, kms_main, moto_main

BUCKET_KINDS = {"owner-enforced": "BucketOwnerEnforced", "acl": "ObjectWriter"}
WRITES = ("PutObject", "CopyObject", "CompleteMultipartUpload")
READS = ("GetObject", "HeadObject")


class Windows:
    """Per object, the time from the response of its last read to its write being sent (botocore hooks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at: dict[str, float] = {}
        self.seconds: list[float] = []

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.s3", self._name)
        client.meta.events.register("before-call.s3", self._before_call)
        client.meta.events.register("after-call.s3", self._after_call)

    @staticmethod
    def _name(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["window_key"] = f"{params.get('Bucket')}/{params.get('Key')}"

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in WRITES:
            with self._lock:
                read_at = self._read_at.pop(context["window_key"], None)
                if read_at is not None:
                    self.seconds.append(time.perf_counter() - read_at)

    def _after_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in READS:
            with self._lock:
                self._read_at[context["window_key"]] = time.perf_counter()


class PathBench:
    def __init__(self, s3_endpoint: str | None, seed: int, s3_latency_ms: float, kms_latency_ms: float) -> None:
        import boto3

        from rewrap.app.runtime import aws_client_config

        self.moto = None if s3_endpoint else Child(moto_main)
        self.url: str = s3_endpoint or self.moto.hello  # type: ignore[union-attr]
        self.kms = Child(kms_main, seed)
        self.kms_url, self.key_tag = self.kms.hello
        self.kms.call("latency", kms_latency_ms / 1000, kms_latency_ms / 1000)
        self.session = boto3.session.Session(**FAKE_AWS)
        self.admin = self.session.client("s3", endpoint_url=self.url, config=aws_client_config(8))
        self.latency = s3_latency_ms / 1000
        self.seed = seed
        suffix = uuid.uuid4().hex[:6]
        self.buckets = {kind: f"rewrap-path-{kind}-{suffix}" for kind in BUCKET_KINDS}
        for kind, bucket in self.buckets.items():
            self.admin.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": REGION},  # type: ignore[typeddict-item]
            )
            rules = [{"ObjectOwnership": BUCKET_KINDS[kind]}]
            self.admin.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": rules})  # type: ignore[typeddict-item]
        secrets = self.session.client("secretsmanager", endpoint_url=self.url)
        secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
        self.secret_id = secrets.create_secret(Name=f"rewrap/path-{suffix}", SecretString=secret)["ARN"]
        counting = TokenPool()
        path_items(counting, seed)
        pool = TokenPool()
        pool.old = self.kms.call("encrypt", self.key_tag, counting.wanted[False])
        self.kms.call("rotate", self.key_tag)
        self.items = path_items(pool, seed)
        self.envelope_body = _pseudo_random(64 * 1024)
        self.seeded_at = 0.0

    def close(self) -> None:
        self.kms.stop()
        if self.moto is not None:
            self.moto.stop()

    def seed_bucket(self, bucket: str) -> None:
        """Every object back at its seeded state (unmetered)."""

        def put(item: Item) -> None:
            body = self.envelope_body[: item.size] if item.envelope else item.body
            self.admin.put_object(
                Bucket=bucket, Key=item.key, Body=body, ContentType=item.content_type, Metadata=item.metadata
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, self.items))
        self.seeded_at = time.monotonic()

    def cpu_clock(self) -> CpuClock:
        pids = {"kms": self.kms.process.pid}
        if self.moto is not None:
            pids["moto"] = self.moto.process.pid
        return CpuClock(pids)

    # --- the contenders ---
    def floor(self, bucket: str) -> dict[str, Any]:
        from rewrap.app.runtime import aws_client_config

        client = self.session.client("s3", endpoint_url=self.url, config=aws_client_config(16))
        meter = Meter(self.latency)
        meter.attach(client)

        def one(item: Item) -> None:
            response = client.get_object(Bucket=bucket, Key=item.key)
            body = response["Body"].read()
            common = {"Bucket": bucket, "Key": item.key, "Metadata": response["Metadata"]}
            if item.envelope:
                source = {"Bucket": bucket, "Key": item.key}
                client.copy_object(CopySource=source, MetadataDirective="REPLACE", **common)
            else:
                client.put_object(Body=body, ContentType=response["ContentType"], **common)

        def run() -> None:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(one, self.items))

        return self._timed(meter, run)

    def rewrap(self, bucket: str) -> dict[str, Any]:
        from rewrap.app.runtime import build_runtime
        from rewrap.core.config import Settings
        from rewrap.core.dispatch import rotate_event
        from rewrap_local.lambda_context import LambdaContext

        settings = Settings(
            key_tag=self.key_tag, secret_id=self.secret_id, endpoint=self.kms_url, buckets=frozenset({bucket})
        )
        runtime = build_runtime(settings, session=self.session, endpoint_url=self.url)
        runtime.kms.credentials.get()  # a warm container has its secret
        meter = Meter(self.latency)
        meter.attach(runtime.s3)
        windows = Windows()
        windows.attach(runtime.s3)
        # objects older than the second they were written in, as a sweep lists them
        time.sleep(max(0.0, self.seeded_at + 1.1 - time.monotonic()))
        keys = [item.key for item in self.items]
        newest = {self.key_tag: 2}  # what the sweep probed and passes along
        records = [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "path-bench",
                "body": json.dumps({"bucket": bucket, "keys": keys[at : at + 100], "newestVersions": newest}),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:rewrap-rotate",
                "awsRegion": REGION,
            }
            for at in range(0, len(keys), 100)
        ]
        answers: list[Any] = []

        def run() -> None:
            answers.append(rotate_event({"Records": records}, LambdaContext(), runtime))

        figures = self._timed(meter, run)
        runtime.kms.http.close()
        figures["failures"] = answers[0]["batchItemFailures"]
        figures["window_ms"] = _spread([s * 1000 for s in windows.seconds])
        return figures

    def _timed(self, meter: Meter, run: Any) -> dict[str, Any]:
        meter.reset()
        before = resource.getrusage(resource.RUSAGE_SELF)
        with self.cpu_clock() as servers:
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        s3 = meter.snapshot()
        n = len(self.items)
        return {
            "seconds": round(seconds, 3),
            "requests_per_object": round(s3["requests"] / n, 3),
            "ops_per_object": {op: round(count / n, 3) for op, count in s3["ops"].items()},
            "client_cpu_ms_per_object": round(client_cpu * 1000 / n, 3),
            "server_cpu_s": {who: s for who, s in servers.seconds.items() if who != "self"},
        }


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "objects": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def measure(bench: PathBench, kind: str, rounds: int, log: Any) -> dict[str, Any]:
    bucket = bench.buckets[kind]
    floors: list[dict[str, Any]] = []
    rewraps: list[dict[str, Any]] = []
    problems: list[str] = []
    for _ in range(rounds):
        bench.seed_bucket(bucket)
        floors.append(bench.floor(bucket))
        rewraps.append(bench.rewrap(bucket))
        wrong = unconverged(bench.admin, bucket, bench.items, newest=2)
        problems += [f"{kind}: {key} not rotated" for key in wrong[:5]]
        problems += [f"{kind}: message failed {f}" for f in rewraps[-1]["failures"]]
    floor, rewrap = _median(floors), _median(rewraps)
    log(f"  {kind}: {rewrap['requests_per_object']} requests/object, {rewrap['seconds']} s vs {floor['seconds']} s")
    return {
        "bucket": BUCKET_KINDS[kind],
        "floor": floor,
        "rewrap": rewrap,
        "wall_vs_floor": round(rewrap["seconds"] / floor["seconds"], 2),
        "client_cpu_vs_floor": round(rewrap["client_cpu_ms_per_object"] / floor["client_cpu_ms_per_object"], 2),
        "rewrap_seconds_all": [r["seconds"] for r in rewraps],
        "floor_seconds_all": [f["seconds"] for f in floors],
        "problems": problems,
    }


def render(record: dict[str, Any]) -> str:
    p = record["parameters"]
    lines = [
        "<!-- written by `make bench-path` (python -m rewrap_local.bench.path); do not edit -->",
        f"Run {record['timestamp']} at `{record['git']['commit'][:10]}`{' (dirty)' if record['git']['dirty'] else ''} "
        f"against {p['backend']}: {p['objects']} objects (240 small JSON, 4 NDJSON x 500 tokens, 40 envelopes of "
        f"64 KiB), KMS {p['kms_latency_ms']:g} ms, S3 +{p['s3_latency_ms']:g} ms per request, medians of "
        f"{p['rounds']} rounds, load average {record['loadavg_at_start']} at the start.",
        "",
        "| bucket | S3 requests per rotated object (floor) | by operation | wall s (floor) | wall ÷ floor | client CPU "
        "ms/object (floor) | servers' CPU s (floor) | read→write ms p50 / p95 / max |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for figures in record["buckets"].values():
        r, f, w = figures["rewrap"], figures["floor"], figures["rewrap"]["window_ms"]
        ops = ", ".join(f"{op} {n:g}" for op, n in sorted(r["ops_per_object"].items(), key=lambda x: -x[1]))
        lines.append(
            f"| {figures['bucket']} | {r['requests_per_object']} ({f['requests_per_object']}) | {ops} | "
            f"{r['seconds']} ({f['seconds']}) | {figures['wall_vs_floor']}x | {r['client_cpu_ms_per_object']} "
            f"({f['client_cpu_ms_per_object']}; {figures['client_cpu_vs_floor']}x) | "
            f"{r['server_cpu_s']} ({f['server_cpu_s']}) | {w.get('p50')} / {w.get('p95')} / {w.get('max')} |"
        )
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.bench.path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--localstack", action="store_true", help="S3 at REWRAP_TEST_S3_ENDPOINT, not a moto server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--s3-latency-ms", type=float, default=3.0)
    parser.add_argument("--kms-latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench")
    args = parser.parse_args(argv)
    endpoint = os.environ.get("REWRAP_TEST_S3_ENDPOINT") if args.localstack else None
    if args.localstack and not endpoint:
        parser.error("--localstack needs REWRAP_TEST_S3_ENDPOINT (make bench-path-localstack sets it)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from rewrap.observability import logger

    # the line per object a function logs is part of its CPU; it goes to CloudWatch, here to nowhere
    logger.registered_handler.setStream(Path(os.devnull).open("w"))  # noqa: SIM115 (for the whole run)
    load = [round(x, 2) for x in os.getloadavg()]
    bench = PathBench(endpoint, args.seed, args.s3_latency_ms, args.kms_latency_ms)
    try:
        figures = {kind: measure(bench, kind, args.rounds, log) for kind in BUCKET_KINDS}
    finally:
        bench.close()
    record = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "loadavg_at_start": load,
        "parameters": {
            "backend": "LocalStack" if endpoint else "moto",
            "objects": len(bench.items),
            "rounds": args.rounds,
            "s3_latency_ms": args.s3_latency_ms,
            "kms_latency_ms": args.kms_latency_ms,
        },
        "buckets": figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "path.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    text = render(record)
    (args.out / f"path-{record['parameters']['backend'].lower()}.md").write_text(text)
    print(text)
    problems = [p for f in figures.values() for p in f["problems"]]
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
