"""Lambda containers for the fleet bench: each is a child process with its own runtime (built once,
as a container's init does), running the real handlers, driven through a pipe.

A rotate container plays the SQS event source mapping as well: it receives a batch, invokes the
rotate handler with the event Lambda would build, deletes what was acknowledged and makes what was
reported in ``batchItemFailures`` visible again. Every invocation is measured on its own: wall and
CPU time, the S3 and SQS requests it sent (botocore hooks on the runtime's clients; the S3 ones get
the bench's injected latency) and, in a container that traces memory, tracemalloc's peak above the
heap at the call's start."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from typing import Any

# Lambda's SQS event source mapping receives at most this many messages per ReceiveMessage call.
RECEIVE_LIMIT = 10


def container_main(conn: Connection, env: dict[str, str], s3_latency_s: float, trace_memory: bool) -> None:
    # Powertools writes its logs and EMF metrics to stdout, as in Lambda: the work is done, the noise dropped.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.environ.update(env)
    import tracemalloc

    import boto3

    from rewrap.app.handlers import rotate, sweep
    from rewrap.app.runtime import aws_client_config, get_runtime
    from rewrap_local.lambda_context import LambdaContext
    from rewrap_local.payloads import sqs_event

    from .meter import Meter

    began = time.perf_counter()
    runtime = get_runtime()
    s3 = Meter(s3_latency_s)
    sqs = Meter(0)
    s3.attach(runtime.s3)
    sqs.attach(runtime.sqs)
    runtime.kms.credentials.get()  # the secret is fetched during init, before the first invocation
    mapping = Meter(0)  # the event source mapping's own ReceiveMessage / DeleteMessageBatch calls
    poller = mapping.attach(boto3.session.Session().client("sqs", config=aws_client_config(4)))
    if trace_memory:  # it slows the traced process about 2.5x: only some containers pay for it
        tracemalloc.start()
    handlers = {"rotate": rotate, "sweep": sweep}

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        s3.reset()
        sqs.reset()
        tracemalloc.reset_peak()
        heap_before = tracemalloc.get_traced_memory()[0]
        cpu, wall = time.process_time(), time.perf_counter()
        record: dict[str, Any] = {"function": function}
        try:
            record["response"] = handlers[function](event, LambdaContext(function_name=f"rewrap-{function}"))
        except Exception as exc:  # noqa: BLE001 (Lambda would report it; the bench counts it as a problem)
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        record["seconds"] = time.perf_counter() - wall
        record["cpu_s"] = time.process_time() - cpu
        if trace_memory:
            record["peak_bytes"] = max(0, tracemalloc.get_traced_memory()[1] - heap_before)
        record["s3"] = s3.snapshot()
        record["sqs"] = sqs.snapshot()
        return record

    def poll(queue_url: str, batch: int) -> None:
        """Receive, invoke, acknowledge until the parent says stop; one report per invocation."""
        arn = poller.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        while not conn.poll():
            mapping.reset()
            received = poller.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=1,
                VisibilityTimeout=900,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                continue
            record = invoke("rotate", sqs_event(received, arn))
            response = record.pop("response", None) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            if "error" in record:  # the whole batch comes back, as after a failed invocation
                failed = {m["MessageId"] for m in received}
            acked = [m for m in received if m["MessageId"] not in failed]
            if acked:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(acked)]
                done = poller.delete_message_batch(QueueUrl=queue_url, Entries=entries)
                record["delete_failed"] = len(done.get("Failed", []))
            retry = [m for m in received if m["MessageId"] in failed]
            if retry:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(retry)
                ]
                poller.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
            record.update(messages=len(received), acked=len(acked), failed=len(retry), mapping=mapping.snapshot())
            conn.send(("invocation", record))

    conn.send(("ready", {"init_s": round(time.perf_counter() - began, 3), "pid": os.getpid()}))
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "invoke":
            conn.send(("invoked", invoke(*args)))
        elif command == "poll":
            poll(*args)
            conn.recv()  # the stop that ended the loop
            conn.send(("stopped", None))
        else:
            break
    runtime.kms.http.close()


class Container:
    """One container in a child process (spawned: never fork a process that runs threads)."""

    def __init__(self, name: str, env: dict[str, str], s3_latency_s: float, *, trace_memory: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        args = (child_conn, env, s3_latency_s, trace_memory)
        self.process = ctx.Process(target=container_main, args=args, daemon=True)
        self.process.start()
        child_conn.close()

    def ready(self, timeout: float = 120.0) -> dict[str, Any]:
        return self._expect("ready", timeout)

    def invoke(self, function: str, event: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
        self.conn.send(("invoke", (function, event)))
        return self._expect("invoked", timeout)

    def start_polling(self, queue_url: str, batch: int) -> None:
        self.conn.send(("poll", (queue_url, batch)))

    def stop_polling(self, timeout: float = 900.0) -> list[dict[str, Any]]:
        """Stop the poller; the invocation records that arrived after the parent stopped reading."""
        self.conn.send(("stop", None))
        late: list[dict[str, Any]] = []
        while True:
            kind, value = self._receive(timeout)
            if kind == "stopped":
                return late
            late.append(value)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("exit", None))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"container {self.name} did not answer within {timeout:g} s")
        kind, value = self.conn.recv()
        return kind, value

    def _expect(self, kind: str, timeout: float) -> dict[str, Any]:
        got, value = self._receive(timeout)
        if got != kind:
            raise RuntimeError(f"container {self.name}: expected {kind!r}, got {got!r}")
        return dict(value)
