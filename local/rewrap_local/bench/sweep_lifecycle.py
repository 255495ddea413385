"""What the scheduled sweep costs over a key's life: ``python -m rewrap_local.bench.sweep_lifecycle``.

On the embedded stack (moto server and the NCP KMS emulator on loopback, in process), one target of
``--objects`` small JSON objects holding v1 tokens; the key is rotated, then the real sweep handler runs
on the schedule's event and the queue is drained through the real rotate handler (the SQS event Lambda
builds), five times:

1. the first sweep after the key's rotation;
2. a second sweep, nothing changed since the first;
3. a third sweep, nothing changed;
4. a sweep after ``--written`` objects holding v1 tokens were written without an event.

Per sweep: the keys it enqueued and the S3 requests of the sweep and the rotate invocations together
(counted on the runtime's S3 client through botocore hooks, by operation). The clock-skew margin is set
to 0 (``REWRAP_SWEEP_CLOCK_SKEW_SECONDS``) and each sweep starts ``--gap`` seconds after the last
write, so the run stands for sweeps a day apart without waiting a day; every other setting is the
deployed default. Nothing is written to ``docs/``: the table is printed (``--json`` for a record).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from rewrap_local.bench.meter import Meter
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event
from rewrap_local.stack import LocalStack, environment, local_stack

REPORTS_BUCKET = "rewrap-lifecycle-reports"
ROWS = (
    ("first, after a key rotation", None),
    ("second, nothing changed", None),
    ("third, nothing changed", None),
    ("after {written} objects were written without an event", "written"),
)


def v1_tokens(stack: LocalStack, count: int) -> list[str]:
    """Tokens of the key's version at the time of the call (v1: called before the rotation)."""
    from rewrap.app.runtime import get_runtime

    return get_runtime().kms.encrypt(stack.key_tag, [f"secret-{i}".encode() for i in range(count)])


def seed(stack: LocalStack, keys: Sequence[str], tokens: list[str]) -> None:
    """One JSON document per key, each with two of ``tokens``."""
    s3 = stack.client("s3")
    for index, key in enumerate(keys):
        pair = tokens[2 * index : 2 * index + 2]
        body = json.dumps({"id": key, "password": pair[0], "apiKey": pair[1]}).encode()
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body, ContentType="application/json")


def one_sweep(stack: LocalStack, meter: Meter) -> dict[str, Any]:
    """The schedule fires; the queue is drained through the rotate handler. Keys enqueued and S3 requests."""
    from rewrap.app.handlers import rotate, sweep

    meter.reset()
    answer = sweep(load_event("schedule.json"), LambdaContext(function_name="rewrap-sweep"))
    delivered = drain_queue(stack.client("sqs"), stack.queue_url, rotate, max_rounds=1000)
    counted = meter.snapshot()
    return {
        "enqueued": int(answer.get("enqueued", 0)),
        "listed": int(answer.get("listed", 0)),
        "scope": answer.get("scope", "full"),
        "s3_requests": counted["requests"],
        "s3_ops": counted["ops"],
        "rotate_invocations": delivered["invocations"],
        "failed_messages": delivered["failed"],
    }


def measure(objects: int, written: int, gap: float, report_prefix: bool) -> dict[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    from rewrap.app.runtime import get_runtime, reset_runtime

    rows: list[dict[str, Any]] = []
    with local_stack(bucket="rewrap-lifecycle", seed=7) as stack:
        env = {
            **stack.environment(),
            "REWRAP_SWEEP_CLOCK_SKEW_SECONDS": "0",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        if report_prefix:
            stack.client("s3").create_bucket(
                Bucket=REPORTS_BUCKET,
                CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"},  # type: ignore[typeddict-item]
            )
            env["REWRAP_REPORT_PREFIX"] = f"s3://{REPORTS_BUCKET}/rewrap/"
        parameters.clear_caches()
        reset_runtime()
        try:
            with environment(env):
                meter = Meter(0.0)
                meter.attach(get_runtime().s3)
                tokens = v1_tokens(stack, 2 * (objects + written))
                seed(stack, [f"data/{i:05d}.json" for i in range(objects)], tokens[: 2 * objects])
                stack.kms.rotate(stack.key_tag)
                for title, before in ROWS:
                    if before == "written":  # v1 tokens, as a copy from a backup would hold
                        seed(stack, [f"data/new-{i:03d}.json" for i in range(written)], tokens[2 * objects :])
                    time.sleep(gap)
                    rows.append({"sweep": title.format(written=written), **one_sweep(stack, meter)})
        finally:
            reset_runtime()
    return {"objects": objects, "written": written, "reportPrefix": report_prefix, "rows": rows}


def render(record: dict[str, Any]) -> str:
    lines = ["| sweep | keys enqueued | S3 requests | S3 requests by operation |", "|---|---:|---:|---|"]
    for row in record["rows"]:
        ops = ", ".join(f"{name} {n}" for name, n in row["s3_ops"].items())
        lines.append(f"| {row['sweep']} | {row['enqueued']:,} | {row['s3_requests']:,} | {ops} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.bench.sweep_lifecycle", description=__doc__)
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--written", type=int, default=5, help="objects written without an event before sweep 4")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between the last write and a sweep")
    parser.add_argument("--no-report-prefix", action="store_true", help="run without REWRAP_REPORT_PREFIX")
    parser.add_argument("--json", action="store_true", help="print the record as JSON too")
    args = parser.parse_args(argv)
    record = measure(args.objects, args.written, args.gap, not args.no_report_prefix)
    print(render(record))
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
