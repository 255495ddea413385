"""The census on the fleet: sweep in census mode → queue → rotate handler → partials → one verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from functions.sweep.app import lambda_handler as sweep
from rewrap.app.runtime import get_runtime, reset_runtime
from rewrap.core.census_runs import RunMerge, merge_run
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue
from rewrap_local.stack import LocalStack, environment

REPORTS = "reports/"


@pytest.fixture
def fleet(handler_env: LocalStack) -> Iterator[LocalStack]:
    """The handlers' environment with reports (and so census partials) under s3://bucket/reports/."""
    reset_runtime()
    with environment({"REWRAP_REPORT_PREFIX": f"s3://{handler_env.bucket}/{REPORTS}"}):
        yield handler_env
    reset_runtime()


def seed(stack: LocalStack, count: int, *, rotate_after: int | None = None) -> dict[str, str]:
    """``count`` text objects under data/ with 2 tokens each, the first ``rotate_after`` on v1 and the
    rest on v2 (the key is rotated in between); returns each key's ETag."""
    kms = get_runtime().kms
    s3 = stack.client("s3")
    etags = {}
    for index in range(count):
        if index == rotate_after:
            stack.kms.rotate(stack.key_tag)
        body = " ".join(kms.encrypt(stack.key_tag, [f"{index}-a".encode(), f"{index}-b".encode()]))
        key = f"data/obj-{index:03d}.txt"
        etags[key] = s3.put_object(Bucket=stack.bucket, Key=key, Body=body.encode())["ETag"]
    s3.put_object(Bucket=stack.bucket, Key="data/plain.txt", Body=b"no tokens here")
    etags["data/plain.txt"] = s3.head_object(Bucket=stack.bucket, Key="data/plain.txt")["ETag"]
    return etags


def run_folder(stack: LocalStack, run_id: str) -> list[tuple[str, bytes]]:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{REPORTS}census/{run_id}/").get("Contents", [])
    return [
        (item["Key"].rpartition("/")[2], s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read())
        for item in listed
    ]


def merged(stack: LocalStack, run_id: str, min_version: int | None) -> RunMerge:
    url = f"s3://{stack.bucket}/{REPORTS}census/{run_id}/"
    return merge_run(run_folder(stack, run_id), url, min_version, None)


def etags_now(stack: LocalStack, keys: list[str]) -> dict[str, str]:
    s3 = stack.client("s3")
    return {key: s3.head_object(Bucket=stack.bucket, Key=key)["ETag"] for key in keys}


def census_sweep(stack: LocalStack, **extra: Any) -> dict[str, Any]:
    event = {"mode": "census", "targets": [f"{stack.bucket}/data/"], **extra}
    result: dict[str, Any] = sweep(event, LambdaContext(function_name="rewrap-sweep"))
    return result


def test_fleet_census_merges_into_the_direct_census_verdict_and_writes_nothing(fleet: LocalStack) -> None:
    # Given 12 objects on v1, 8 on v2 and one without tokens
    etags = seed(fleet, 20, rotate_after=12)

    # When the sweep runs in census mode and the queue is drained through the rotate handler
    report = census_sweep(fleet)
    delivered = drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)

    # Then no object was written, and the partials merge into one complete verdict
    assert report["mode"] == "census" and report["enqueued"] == 21 and delivered["failed"] == 0
    assert etags_now(fleet, list(etags)) == etags
    run = merged(fleet, report["runId"], 2)
    assert run.complete and run.accounted == 21 and run.enqueued == 21
    assert run.census.judge().verdict == "NOT SAFE"
    assert run.census.stale_objects == 12 and run.census.stale_tokens == 24
    assert run.census.kinds["text"] == 20 and run.census.kinds["no-tokens"] == 1
    code, lines = run.judge_lines()
    assert code == 1 and lines[0].startswith("NOT SAFE: 24 tokens in 12 objects are older than v2")
    assert len(run.census.stale_examples) == 10
    assert all(min(item.versions) == 1 for item in run.census.stale_examples)
    # and against v1 nothing is older: SAFE, proven (the bucket is not versioned)
    assert merged(fleet, report["runId"], 1).judge_lines()[0] == 0


def test_archived_objects_are_asked_about_so_the_fleet_verdict_is_unknown(fleet: LocalStack) -> None:
    # Given current objects and one archived in Glacier (a rotation sweep skips it: S3 cannot serve it)
    seed(fleet, 3)
    fleet.client("s3").put_object(Bucket=fleet.bucket, Key="data/cold.txt", Body=b"?", StorageClass="GLACIER")

    # When a census run covers the prefix
    report = census_sweep(fleet)
    drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)

    # Then the archived object is counted as unreadable, and the verdict cannot be SAFE
    assert report["archived"] == 1 and report["enqueued"] == 5
    run = merged(fleet, report["runId"], 1)
    code, lines = run.judge_lines()
    assert run.complete and code == 1 and lines[0].startswith("UNKNOWN")
    assert run.census.kinds["unreadable"] == 1


def test_redelivered_census_request_is_not_counted_twice(fleet: LocalStack) -> None:
    seed(fleet, 5)
    report = census_sweep(fleet, runId="run-redelivered")
    sqs = fleet.client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=fleet.queue_url, AttributeNames=["QueueArn"])["Attributes"]
    received = sqs.receive_message(QueueUrl=fleet.queue_url, MaxNumberOfMessages=10)["Messages"]
    from rewrap_local.payloads import sqs_event

    event = sqs_event(received, queue_arn["QueueArn"])
    assert rotate(event, LambdaContext()) == {"batchItemFailures": []}
    assert rotate(event, LambdaContext()) == {"batchItemFailures": []}  # delivered again
    run = merged(fleet, report["runId"], 1)
    assert run.complete and run.accounted == 6 and run.partials == 1


def test_incomplete_and_mixed_runs_name_the_partials_and_exit_1(fleet: LocalStack) -> None:
    # Given a finished census run over 21 objects, one message per 4 keys
    seed(fleet, 20)
    reset_runtime()
    with environment({"REWRAP_SWEEP_KEYS_PER_MESSAGE": "4"}):
        report = census_sweep(fleet)
        drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)
    records = run_folder(fleet, report["runId"])
    partials = [name for name, _ in records if name.startswith("part-")]
    assert len(partials) == 6
    url = f"s3://{fleet.bucket}/{REPORTS}census/{report['runId']}/"

    # When one partial is lost and one from another run is dropped in
    kept = [(name, body) for name, body in records if name != partials[0]]
    stranger = json.loads(dict(records)[partials[1]])
    stranger["runId"] = "another-run"
    run = merge_run([*kept, ("part-elsewhere.json", json.dumps(stranger).encode())], url, 1, None)

    # Then the merge says which are missing or foreign, and cannot say SAFE
    code, lines = run.judge_lines()
    assert not run.complete and code == 1
    assert lines[0].startswith("UNKNOWN")
    assert run.missing == [partials[0]]
    assert any("part-elsewhere.json" in name and "another-run" in name for name in run.foreign)
    assert any(f"missing partial: {partials[0]}" in line for line in lines)


def test_a_run_without_the_sweeps_listing_is_not_complete(fleet: LocalStack) -> None:
    seed(fleet, 3)
    report = census_sweep(fleet)
    drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)
    records = [(name, body) for name, body in run_folder(fleet, report["runId"]) if name.startswith("part-")]
    run = merge_run(records, f"s3://x/census/{report['runId']}/", 1, None)
    assert not run.complete and run.judge_lines()[0] == 1
    assert "no sweep listing record" in run.problems[0]


def test_batch_operations_census_job_never_writes_and_reports_versions(fleet: LocalStack) -> None:
    # Given objects on v1 and v2, and a Batch Operations job in census mode over every one of them
    etags = seed(fleet, 6, rotate_after=3)
    tasks = [{"taskId": f"t{i}", "s3Bucket": fleet.bucket, "s3Key": key} for i, key in enumerate(sorted(etags))]
    event = {
        "invocationSchemaVersion": "2.0",
        "invocationId": "inv-1",
        "job": {"id": "job-census-1", "userArguments": {"mode": "census"}},
        "tasks": tasks,
    }

    # When the rotate function answers the job's tasks
    response = rotate(event, LambdaContext())

    # Then every ETag is unchanged, and each task's result string carries the object's versions
    assert etags_now(fleet, list(etags)) == etags
    results = {r["taskId"]: r for r in response["results"]}
    assert {r["resultCode"] for r in results.values()} == {"Succeeded"}
    assert "versions=v1=2" in results["t0"]["resultString"]
    assert "versions=v2=2" in results["t5"]["resultString"]
    assert results["t6"]["resultString"].startswith("census no-tokens")
    # and each task's partial sits under census/<jobId>/, merging into the job's census
    run = merged(fleet, "job-census-1", 2)
    assert run.partials == 7 and run.census.objects == 7 and run.census.stale_objects == 3
    assert {v: c.objects for v, c in run.census.by_key[fleet.key_tag].items()} == {1: 3, 2: 3}


def test_census_request_for_a_bucket_outside_the_allow_list_is_refused(fleet: LocalStack) -> None:
    # Directly: refused permanently, nothing read, no partial
    answer = rotate({"bucket": "someone-elses", "keys": ["a"], "mode": "census", "runId": "r1"}, LambdaContext())
    assert answer["permanent"] == 1 and answer["partial"] is None
    assert "REWRAP_BUCKETS" in answer["error"]["reason"]
    # From the queue: parked on the dead-letter queue with its reason, like a rotate request
    sqs = fleet.client("sqs")
    body = json.dumps({"bucket": "someone-elses", "keys": ["a"], "mode": "census", "runId": "r1"})
    sqs.send_message(QueueUrl=fleet.queue_url, MessageBody=body)
    delivered = drain_queue(sqs, fleet.queue_url, rotate)
    assert delivered["failed"] == 0
    parked = sqs.receive_message(QueueUrl=fleet.dead_letter_queue_url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(parked[0]["Body"])["bucket"] == "someone-elses"
    assert "REWRAP_BUCKETS" in parked[0]["MessageAttributes"]["rewrap-failure"]["StringValue"]
    assert run_folder(fleet, "r1") == []


def test_census_mode_is_refused_without_a_report_prefix(handler_env: LocalStack) -> None:
    from rewrap.errors import ConfigError

    with pytest.raises(ConfigError):
        sweep({"mode": "census"}, LambdaContext(function_name="rewrap-sweep"))


def test_cli_merges_a_run_from_its_reports(fleet: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    import rewrap_cli.main as cli

    seed(fleet, 4, rotate_after=1)
    report = census_sweep(fleet)
    drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)
    url = f"s3://{fleet.bucket}/{REPORTS}census/{report['runId']}/"

    assert cli.main(["census", "--from-reports", url, "--min-version", "2"]) == 1
    out = capsys.readouterr().out
    assert "NOT SAFE: 2 tokens in 1 objects are older than v2" in out
    assert f"run {report['runId']} complete: 5 of 5 enqueued keys reported" in out
    assert cli.main(["census", "--from-reports", url, "--min-version", "1"]) == 0
    assert "SAFE: nothing under census run" in capsys.readouterr().out

    # a lost partial: exit 1, named
    s3 = fleet.client("s3")
    partial = next(name for name, _ in run_folder(fleet, report["runId"]) if name.startswith("part-"))
    s3.delete_object(Bucket=fleet.bucket, Key=f"{REPORTS}census/{report['runId']}/{partial}")
    assert cli.main(["census", "--from-reports", url, "--min-version", "1"]) == 1
    out = capsys.readouterr().out
    assert f"missing partial: {partial}" in out and "NOT complete" in out


def test_fleet_status_follows_a_census_run(fleet: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    import rewrap_cli.main as cli

    seed(fleet, 6)
    reset_runtime()
    with environment({"REWRAP_SWEEP_KEYS_PER_MESSAGE": "3"}):
        report = census_sweep(fleet)
    reports = f"s3://{fleet.bucket}/{REPORTS}"
    assert cli.main(["fleet", "status", report["runId"], "--reports", reports]) == 1  # nothing reported yet
    assert "listed 7  enqueued 7  reported 0" in capsys.readouterr().out
    drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)
    assert cli.main(["fleet", "status", report["runId"], "--reports", reports, "--watch"]) == 0
    out = capsys.readouterr().out
    assert "100.0%" in out and "reported 7" in out and "3/3 partials" in out


def test_fleet_census_invokes_the_stacks_sweep_with_a_run_id(capsys: pytest.CaptureFixture[str]) -> None:
    # moto runs Lambda functions in Docker, which this machine has not: the invoke is checked against
    # botocore's Stubber (the request botocore would send), the stack lookup against a real stub too.
    import boto3
    from botocore.stub import Stubber

    from rewrap.core.config import SweepTarget
    from rewrap_cli import fleet as fleet_cli

    client = boto3.session.Session(region_name="ap-northeast-2").client("lambda")
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "rewrap-sweep",
                "InvocationType": "Event",
                "Payload": json.dumps({"targets": ["b/p/"], "mode": "census", "runId": "r-1"}).encode(),
            },
        )
        assert fleet_cli.start(client, "rewrap-sweep", "census", [SweepTarget("b", "p/")], "r-1") == "r-1"
        stub.assert_no_pending_responses()
    cloudformation = boto3.session.Session(region_name="ap-northeast-2").client("cloudformation")
    with Stubber(cloudformation) as stub:
        detail = {
            "LogicalResourceId": "SweepFunction",
            "PhysicalResourceId": "rewrap-sweep",
            "ResourceType": "AWS::Lambda::Function",
            "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
            "ResourceStatus": "CREATE_COMPLETE",
        }
        stub.add_response(
            "describe_stack_resource",
            {"StackResourceDetail": detail},
            {"StackName": "rewrap", "LogicalResourceId": "SweepFunction"},
        )
        assert fleet_cli.sweep_function(cloudformation, None, "rewrap") == "rewrap-sweep"


@pytest.mark.parametrize(
    "command", [["census", "s3://b/p/", "--stack", "rewrap"], ["rotate", "s3://b/", "--function", "sweep"]]
)
def test_fleet_without_a_region_says_so_in_one_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import rewrap_cli.main as cli

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert cli.main(["fleet", *command]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rewrap: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) to the stack's region"


def test_a_run_folder_is_read_with_one_get_per_record(fleet: LocalStack) -> None:
    from collections import Counter

    from rewrap.adapters.s3 import S3Store
    from rewrap.core.census_runs import run_folder as folder_of
    from rewrap.core.census_runs import run_records

    # Given a finished census run of 7 keys (6 seeded, one without tokens), 3 per message: 3 partials
    # and the sweep's listing record
    seed(fleet, 6)
    reset_runtime()
    with environment({"REWRAP_SWEEP_KEYS_PER_MESSAGE": "3"}):
        report = census_sweep(fleet)
    drain_queue(fleet.client("sqs"), fleet.queue_url, rotate)

    # When the run folder is read through the store
    client = fleet.client("s3")
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    records = list(run_records(S3Store(client), folder_of(f"s3://{fleet.bucket}/{REPORTS}", report["runId"])))

    # Then it holds what a plain listing and GET of each object holds, at one GET per record, no HEAD
    assert sorted(records) == sorted(run_folder(fleet, report["runId"])) and len(records) == 4
    assert (calls["GetObject"], calls["HeadObject"], calls["ListObjectsV2"]) == (4, 0, 1)
