"""A full rotation run's verdict is published once, by the next sweep: verdict.json in the run folder, the
metrics of each key (EMF, dimension KeyTag) and one message to the alarm topic (moto SNS → an SQS queue)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.rotate.app import lambda_handler as rotate
from functions.sweep.app import lambda_handler as sweep
from rewrap.app.runtime import get_runtime, reset_runtime
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, load_event
from rewrap_local.stack import LocalStack, environment
from tests.integration.test_corpus import seed_corpus

REPORTS = "reports/"


class Fleet:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.s3 = stack.client("s3")
        sns, sqs = stack.client("sns"), stack.client("sqs")
        self.topic = sns.create_topic(Name=f"{stack.bucket}-alarms")["TopicArn"]
        self.inbox = sqs.create_queue(QueueName=f"{stack.bucket}-alarm-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn["QueueArn"])

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            "REWRAP_REPORT_PREFIX": f"s3://{self.stack.bucket}/{REPORTS}",
            "REWRAP_SWEEP_TARGETS": f"{self.stack.bucket}/c/",
            "REWRAP_SWEEP_KEYS_PER_MESSAGE": "4",
            "REWRAP_ALARM_TOPIC_ARN": self.topic,
            **extra,
        }

    def sweep(self) -> dict[str, Any]:
        answer: dict[str, Any] = sweep(load_event("schedule.json"), LambdaContext(function_name="rewrap-sweep"))
        return answer

    def drain(self) -> None:
        drain_queue(self.stack.client("sqs"), self.stack.queue_url, rotate)

    def announcements(self) -> list[dict[str, Any]]:
        """The messages the alarm topic delivered since the last call (SNS envelopes, taken off the inbox)."""
        sqs, out = self.stack.client("sqs"), []
        while received := sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get("Messages"):
            for message in received:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])
        return out

    def folder(self, run_id: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.stack.bucket, Prefix=f"{REPORTS}census/{run_id}/")
        return [item["Key"] for item in listed.get("Contents", [])]

    def verdict(self, run_id: str) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=self.stack.bucket, Key=f"{REPORTS}census/{run_id}/verdict.json")["Body"]
        return dict(json.loads(body.read()))


@pytest.fixture
def fleet(handler_env: LocalStack) -> Iterator[Fleet]:
    built = Fleet(handler_env)
    reset_runtime()
    with environment(built.environment()):
        yield built
    reset_runtime()


def key_metrics(out: str) -> dict[tuple[str, str], float]:
    """(metric, key tag) → value, from the EMF lines the sweep printed."""
    found = {}
    for line in out.splitlines():
        if line.startswith("{") and '"KeyTag"' in line:
            record = json.loads(line)
            for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = record[metric["Name"]]
                found[metric["Name"], record["KeyTag"]] = value[0] if isinstance(value, list) else value
    return found


def test_the_next_sweep_publishes_a_complete_full_runs_verdict_once(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given every form on v1, the key rotated, and key info that tells the next rotation (API 2.0)
    fleet = Fleet(handler_env)
    reset_runtime()
    with environment(fleet.environment(NCP_KMS_API="2.0")):
        seed_corpus(fleet.stack, get_runtime())
        fleet.stack.kms.rotate(fleet.stack.key_tag)

        # When the schedule runs a full rotation run, and a scheduled sweep comes before its queue is drained
        run = fleet.sweep()
        assert run["scope"] == "full"
        fleet.sweep()
        assert fleet.announcements() == [] and f"{REPORTS}census/{run['runId']}/verdict.json" not in fleet.folder(
            run["runId"]
        )  # not complete yet: nothing is told
        fleet.drain()
        capsys.readouterr()
        fleet.sweep()
        out = capsys.readouterr().out

        # Then the sweep after it tells: the key, the versions that can be retired, the run, the counts
        (message,) = fleet.announcements()
        tag = fleet.stack.key_tag
        assert message["Subject"].startswith(f"rewrap: key {tag[:24]} SAFE, v1 can be retired")
        attributes = {name: value["Value"] for name, value in message["MessageAttributes"].items()}
        assert attributes == {"rewrap-run-id": run["runId"], "rewrap-verdict": "SAFE"}
        text = message["Message"]
        assert f"Key {tag} (newest v2; NCP rotates it next at 2" in text
        assert "versions that can be retired: v1" in text and "--below 2" in text
        assert f"Run {run['runId']}: complete; 11 listed, 11 enqueued, 11 reported" in text
        assert "rotation: " in text and "rotated 10" in text
        verdict = fleet.verdict(run["runId"])
        assert verdict["verdict"] == "SAFE" and verdict["keys"][0]["retirableVersions"] == [1]
        assert key_metrics(out) == {
            ("OldestKeyVersionInUse", tag): 2,
            ("ObjectsBelowNewestVersion", tag): 0,
            ("KeyVersionsRetirable", tag): 1,
            ("KeyVerdictSafe", tag): 1,
        }

        # and only once
        fleet.sweep()
        assert fleet.announcements() == []
    reset_runtime()


def test_a_not_safe_verdict_says_why(fleet: Fleet) -> None:
    seed_corpus(fleet.stack, get_runtime())
    (good,) = get_runtime().kms.encrypt(fleet.stack.key_tag, [b"poisoned"])
    body = f"ok={good} broken=ncpkms:v1:@@@@\n".encode()
    fleet.s3.put_object(Bucket=fleet.stack.bucket, Key="c/poison.txt", Body=body)
    fleet.stack.kms.rotate(fleet.stack.key_tag)

    run = fleet.sweep()
    fleet.drain()
    fleet.sweep()

    (message,) = fleet.announcements()
    assert message["Subject"].startswith(f"rewrap: key {fleet.stack.key_tag[:24]} NOT SAFE")
    text = message["Message"]
    assert "NOT SAFE: 1 tokens in 1 objects are older than v2" in text and "v1: 1 tokens in 1 objects" in text
    assert "malformed: 1 objects" in text and "poison.txt" in text  # why it could not be rotated
    assert "no version can be retired on this run's word" in text
    assert fleet.verdict(run["runId"])["keys"][0]["retirableVersions"] == []


def test_a_run_that_lost_a_partial_waits_then_is_told_unknown_when_a_full_sweep_supersedes_it(fleet: Fleet) -> None:
    seed_corpus(fleet.stack, get_runtime())
    fleet.stack.kms.rotate(fleet.stack.key_tag)
    run = fleet.sweep()
    fleet.drain()
    lost = next(key for key in fleet.folder(run["runId"]) if "/part-" in key)
    fleet.s3.delete_object(Bucket=fleet.stack.bucket, Key=lost)

    # an incremental sweep: the run is not complete, and may still be (a redriven message), so it waits
    assert fleet.sweep()["scope"] == "incremental"
    assert fleet.announcements() == []

    # a full one (the key rotated) supersedes it: it is told, UNKNOWN, with the missing partial named
    fleet.stack.kms.rotate(fleet.stack.key_tag)
    assert fleet.sweep()["scope"] == "full"
    (message,) = fleet.announcements()
    assert message["MessageAttributes"]["rewrap-verdict"]["Value"] == "UNKNOWN"
    assert f"missing partial: {lost.rpartition('/')[2]}" in message["Message"]
    assert f"Run {run['runId']}: NOT complete" in message["Message"]
