"""The sweep: listing → rotate requests on the queue, with hand-over between invocations."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from functions.sweep.app import lambda_handler as sweep
from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import Runtime, get_runtime
from rewrap.core.config import SweepTarget
from rewrap.core.sweep import SweepPosition, SweepRun, SweepTools, run_sweep, sweep_event
from rewrap.core.tokens import scan
from rewrap.deadline import Deadline
from rewrap.errors import ConfigError
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event
from rewrap_local.stack import LocalStack


class PagesDeadline(Deadline):
    """Runs out after a fixed number of pages: a stand-in for an invocation's time budget."""

    def __init__(self, pages: int) -> None:
        super().__init__(None)
        self.left = pages

    def expired(self, margin: float = 0.0) -> bool:
        self.left -= 1
        return self.left <= 0


def queued_requests(stack: LocalStack) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_listing_longer_than_an_invocation_enqueues_every_key_exactly_once(stack: LocalStack, runtime: Runtime) -> None:
    # Given 53 objects, pages of 10 keys, and invocations that each manage 2 pages
    s3 = stack.client("s3")
    keys = sorted(f"data/{i:03d} file+ü.txt" for i in range(53))
    for key in keys:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    settings = stack.settings(sweep_keys_per_message=4, sweep_page_size=10)
    targets = [SweepTarget(stack.bucket, "data/")]
    assert runtime.rotate_queue is not None
    position: SweepPosition | None = SweepPosition()
    invocations = 0

    # When each invocation continues where the previous one handed over
    while position is not None:
        tools = SweepTools(settings, S3Store(runtime.s3), runtime.rotate_queue)
        report = run_sweep(SweepRun("", targets=targets), position, tools, PagesDeadline(2))
        invocations += 1
        position = report.resume_at

    # Then every key was enqueued exactly once, in messages of at most 4 keys
    bodies = queued_requests(stack)
    sent = [key for body in bodies for key in body["keys"]]
    assert sorted(sent) == keys
    assert invocations == 3  # pages 1-2, 3-4, 5-6
    assert all(len(body["keys"]) <= 4 and body["bucket"] == stack.bucket for body in bodies)


def test_filters_skip_large_and_old_objects(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="small.txt", Body=b"x")
    s3.put_object(Bucket=stack.bucket, Key="large.txt", Body=b"x" * 5000)
    settings = stack.settings(sweep_max_object_bytes=1000)
    assert runtime.rotate_queue is not None
    run = SweepRun("", targets=[SweepTarget(stack.bucket)])
    report = run_sweep(
        run, SweepPosition(), SweepTools(settings, S3Store(runtime.s3), runtime.rotate_queue), Deadline(None)
    )
    assert (report.listed, report.enqueued) == (2, 1)
    assert [b["keys"] for b in queued_requests(stack)] == [["small.txt"]]

    future = datetime.now(UTC) + timedelta(days=1)
    tools = SweepTools(stack.settings(sweep_modified_after=future), S3Store(runtime.s3), runtime.rotate_queue)
    report = run_sweep(run, SweepPosition(), tools, Deadline(None))
    assert report.enqueued == 0


def test_scheduled_sweep_converges_the_bucket_through_the_rotate_handler(handler_env: LocalStack) -> None:
    # Given objects under an old key version, and a rotation
    stack = handler_env
    kms = get_runtime().kms
    s3 = stack.client("s3")
    for index in range(25):
        body = " ".join(kms.encrypt(stack.key_tag, [f"{index}-{j}".encode() for j in range(3)]))
        s3.put_object(Bucket=stack.bucket, Key=f"obj-{index}.txt", Body=body.encode())
    stack.kms.rotate(stack.key_tag)

    # When the schedule fires and the queue is drained through the rotate handler
    report = sweep(load_event("schedule.json"), LambdaContext(function_name="rewrap-sweep"))
    delivered = drain_queue(stack.client("sqs"), stack.queue_url, rotate)

    # Then everything is on v2 and the sweep reported its counts
    assert report["listed"] == 25 and report["enqueued"] == 25 and report["continued"] is False
    assert delivered["failed"] == 0
    for index in range(25):
        data = s3.get_object(Bucket=stack.bucket, Key=f"obj-{index}.txt")["Body"].read()
        assert {t.version for t in scan(data)[0]} == {2}


def test_sweep_hands_over_with_a_continuation_payload(stack: LocalStack, runtime: Runtime) -> None:
    s3 = stack.client("s3")
    for i in range(5):
        s3.put_object(Bucket=stack.bucket, Key=f"k{i}", Body=b"x")
    handed_over: list[dict[str, Any]] = []
    settings = stack.settings(sweep_targets=(SweepTarget(stack.bucket),), sweep_page_size=2)

    class AlmostOutOfTime(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 1000  # below the hand-over reserve: one page, then hand over

    services = dataclasses.replace(runtime, settings=settings)
    # the hand-over is a Lambda Invoke, which cannot run here: record its payload instead
    services.continue_async = lambda context, payload: handed_over.append(payload)  # type: ignore[method-assign]
    result = sweep_event({}, AlmostOutOfTime(), services)
    assert result["continued"] is True and result["enqueued"] == 2
    (payload,) = handed_over
    assert payload["rewrapSweep"]["targets"] == [stack.bucket]
    assert payload["rewrapSweep"]["continuationToken"]
    # the rotate requests carry the newest version the sweep probed, so warm caches are corrected
    assert queued_requests(stack)[0]["newestVersions"] == {stack.key_tag: 1}


def test_sweep_refuses_targets_outside_the_allow_list(stack: LocalStack, runtime: Runtime) -> None:
    with pytest.raises(ConfigError):
        sweep_event({"targets": ["someone-elses-bucket"]}, LambdaContext(), runtime)
