"""The functions' audit trail: per-object JSON lines under REWRAP_REPORT_PREFIX, best effort."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from functions.sweep.app import lambda_handler as sweep
from rewrap.app.runtime import reset_runtime
from rewrap.core.reports import csv_cell, report_key
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event, s3_notification
from rewrap_local.stack import LocalStack
from tests.observed import emitted_metrics, service_log

AUDIT = "audit/rewrap"


@pytest.fixture
def reporting(handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    monkeypatch.setenv("REWRAP_REPORT_PREFIX", f"s3://{handler_env.bucket}/{AUDIT}/")
    reset_runtime()
    return handler_env


def reports(stack: LocalStack) -> dict[str, list[dict[str, Any]]]:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{AUDIT}/").get("Contents", [])
    return {
        o["Key"]: [json.loads(line) for line in s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"].iter_lines()]
        for o in listed
        if o["Key"].endswith(".jsonl")  # the audit reports, not the runs' partials or the sweep's checkpoints
    }


def seed(stack: LocalStack) -> list[str]:
    s3 = stack.client("s3")
    keys = ["a.txt", "b.json", "plain.txt"]
    s3.put_object(Bucket=stack.bucket, Key="a.txt", Body=stack.kms.encrypt(stack.key_tag, b"1").encode())
    body = json.dumps([stack.kms.encrypt(stack.key_tag, b"2"), stack.kms.encrypt(stack.key_tag, b"3")])
    s3.put_object(Bucket=stack.bucket, Key="b.json", Body=body.encode())
    s3.put_object(Bucket=stack.bucket, Key="plain.txt", Body=b"nothing")
    stack.kms.rotate(stack.key_tag)
    return keys


def test_each_rotate_invocation_writes_one_json_lines_object(reporting: LocalStack) -> None:
    stack = reporting
    keys = seed(stack)
    context = LambdaContext()
    before = datetime.now(UTC)
    rotate(s3_notification(stack.bucket, keys), context)

    (key, records), *_ = reports(stack).items()
    assert len(reports(stack)) == 1
    day = f"{before:%Y/%m/%d}"
    assert re.fullmatch(rf"{AUDIT}/{day}/\d{{6}}Z-{context.aws_request_id}\.jsonl", key), key
    assert [r["key"] for r in records] == keys
    a = records[0]
    assert {k: a[k] for k in ("source", "route", "requestId", "status", "fromVersions", "toVersion", "tokens")} == {
        "source": "rotate",
        "route": "s3-notification",
        "requestId": context.aws_request_id,
        "status": "rotated",
        "fromVersions": [1],
        "toVersion": 2,
        "tokens": 1,
    }
    assert datetime.fromisoformat(a["time"]) >= before.replace(microsecond=0)
    assert records[2]["status"] == "no-tokens"
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)
    assert head["ContentType"] == "application/x-ndjson"


def test_a_report_in_a_watched_bucket_does_not_start_a_loop(reporting: LocalStack) -> None:
    stack = reporting
    rotate(s3_notification(stack.bucket, seed(stack)), LambdaContext())
    (report_object,) = reports(stack)
    # the report's own ObjectCreated event reaches the function: nothing new to report, no new object
    response = rotate(s3_notification(stack.bucket, [report_object]), LambdaContext())
    assert response["no-tokens"] == 1
    assert list(reports(stack)) == [report_object]


def test_a_runs_partials_and_checkpoints_in_a_watched_bucket_start_no_loop_either(reporting: LocalStack) -> None:
    stack = reporting
    seed(stack)
    sweep({"targets": [stack.bucket]}, LambdaContext(function_name="rewrap-sweep"))
    drain_queue(stack.client("sqs"), stack.queue_url, rotate)
    s3 = stack.client("s3")
    written = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{AUDIT}/")["Contents"])
    own = [key for key in written if not key.endswith(".jsonl")]
    assert any("/census/" in key for key in own) and any("/checkpoints/" in key for key in own)
    # their own ObjectCreated events reach the function: answered, and nothing new is written
    rotate(s3_notification(stack.bucket, own), LambdaContext())
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{AUDIT}/")["Contents"]) == written


def test_a_failed_report_write_never_fails_the_rotation(
    handler_env: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = handler_env
    monkeypatch.setenv("REWRAP_REPORT_PREFIX", "s3://no-such-report-bucket/audit")
    reset_runtime()
    keys = seed(stack)
    capsys.readouterr()
    with service_log() as records:
        response = rotate(s3_notification(stack.bucket, keys), LambdaContext())
    assert (response["rotated"], response["failed"]) == (2, 0)
    assert emitted_metrics(capsys.readouterr().out)["ReportWriteFailures"] == 1.0
    (warning,) = [r for r in records if r.getMessage() == "report not written"]
    assert warning.levelname == "WARNING"
    assert warning.reason == "no-such-bucket: S3 PUT failed (NoSuchBucket)"  # type: ignore[attr-defined]


@pytest.mark.parametrize("prefix", ["no-scheme-bucket/audit", "s3://"])
def test_a_malformed_prefix_is_a_warning_not_a_failure(
    handler_env: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    monkeypatch.setenv("REWRAP_REPORT_PREFIX", prefix)
    reset_runtime()
    keys = seed(handler_env)
    response = rotate(s3_notification(handler_env.bucket, keys), LambdaContext())
    assert response["rotated"] == 2
    assert emitted_metrics(capsys.readouterr().out)["ReportWriteFailures"] == 1.0


def test_reports_are_off_by_default(handler_env: LocalStack) -> None:
    rotate(s3_notification(handler_env.bucket, seed(handler_env)), LambdaContext())
    assert reports(handler_env) == {}


def test_a_sweep_leaves_its_own_record_and_its_rotate_invocations_theirs(reporting: LocalStack) -> None:
    stack = reporting
    keys = seed(stack)
    context = LambdaContext(function_name="rewrap-sweep")
    sweep(load_event("schedule.json"), context)
    delivered = drain_queue(stack.client("sqs"), stack.queue_url, rotate)
    assert delivered["failed"] == 0
    by_source: dict[str, list[dict[str, Any]]] = {}
    for records in reports(stack).values():
        for record in records:
            by_source.setdefault(record["source"], []).append(record)
    (swept,) = by_source["sweep"]
    assert swept["requestId"] == context.aws_request_id
    assert (swept["listed"], swept["enqueued"], swept["continued"]) == (3, 3, False)
    assert swept["targets"] == [stack.bucket]
    assert swept["newestVersions"] == {stack.key_tag: 2}
    rotated = {r["key"]: r["status"] for r in by_source["rotate"]}
    assert rotated == {keys[0]: "rotated", keys[1]: "rotated", keys[2]: "no-tokens"}
    assert {r["route"] for r in by_source["rotate"]} == {"sqs"}


def test_report_keys_and_csv_cells() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert report_key("audit/", "req-1", now) == "audit/2026/03/04/050607Z-req-1.jsonl"
    assert report_key("", "req-1", now) == "2026/03/04/050607Z-req-1.jsonl"
    assert [csv_cell(v) for v in (None, True, [1, 2], {"v1": 3, "v2": 1}, 7)] == ["", "true", "1;2", "v1=3;v2=1", "7"]
