"""What ships: the ``sam build`` output, run in a clean Python 3.12 holding only the built function
directory and the layer (as Lambda does), against the embedded stack over loopback.

``make test`` builds the artifacts first (``make package``); run it once before calling pytest on this
file alone. Nothing from the dev ``.venv`` is visible to the functions here: a module the layer forgets
fails these tests, as it would fail every invocation on AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from rewrap.app.runtime import Runtime
from rewrap.core.tokens import scan, token_version
from rewrap_local.artifacts import BuiltFunction, Invocation
from rewrap_local.payloads import load_event, s3_notification, sqs_event
from rewrap_local.stack import LocalStack
from tests.permissions import ROOT, actions_for, role_actions

# Packages that exist only in the dev environment; the functions must never load one.
DEV_ONLY = ("moto", "pytest", "_pytest", "rewrap_local", "werkzeug", "flask", "responses", "cryptography", "yaml")
SECRETS = {
    "direct/notified.txt": b"s3-notification",
    "queued/batch-a.json": b"sqs-a",
    "queued/batch-b.json": b"sqs-b",
    "bulk/task.env": b"batch-operations",
}


@pytest.fixture
def seeded(stack: LocalStack, runtime: Runtime) -> Iterator[LocalStack]:
    s3 = stack.client("s3")
    for key, secret in SECRETS.items():
        (token,) = runtime.kms.encrypt(stack.key_tag, [secret])
        s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps({"secret": token}).encode())
    stack.kms.rotate(stack.key_tag)
    yield stack


def versions(stack: LocalStack, runtime: Runtime) -> dict[str, tuple[int, bytes]]:
    """Each seeded object's token version and the plaintext it decrypts to (checked in the emulator)."""
    s3, out = stack.client("s3"), {}
    for key in SECRETS:
        (token,) = scan(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())[0]
        (plain,) = runtime.kms.decrypt(stack.key_tag, [token.text])
        out[key] = (token_version(token.text), plain)
    return out


def assert_shipped_modules_and_granted_calls(function: BuiltFunction, invocation: Invocation) -> None:
    assert function.foreign_modules(invocation.modules) == {}
    loaded_dev_only = sorted(name for name in invocation.modules if name.split(".")[0] in DEV_ONLY)
    assert loaded_dev_only == []
    # every AWS call the function made is one the template's role for it grants
    template = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))
    role = {"rotate": "RotateFunctionRole", "sweep": "SweepFunctionRole"}[function.name]
    assert invocation.calls, "no AWS call recorded"
    assert actions_for(invocation.calls) - role_actions(template, role) == set(), invocation.calls


def test_built_rotate_function_serves_s3_sqs_and_batch_operations(seeded: LocalStack, runtime: Runtime) -> None:
    # Given three real-shaped events naming four objects still on key version 1
    stack = seeded
    notification = s3_notification(stack.bucket, ["direct/notified.txt"])
    queued = [
        {"MessageId": f"m-{i}", "ReceiptHandle": f"r-{i}", "Body": json.dumps(s3_notification(stack.bucket, [key]))}
        for i, key in enumerate(["queued/batch-a.json", "queued/batch-b.json"])
    ]
    batch = load_event("batch-ops-2.0.json")
    batch["tasks"] = [dict(batch["tasks"][0], s3Bucket=stack.bucket, s3Key="bulk/task.env", s3VersionId=None)]
    function = BuiltFunction.find("rotate")

    # When the built function handles them in one container
    invocation = function.invoke(
        [notification, sqs_event(queued, f"arn:aws:sqs:ap-northeast-2:000000000000:{stack.bucket}-rotate"), batch],
        stack.environment(),
    )

    # Then every object is on version 2 with its plaintext, each route answered as Lambda expects,
    # and every module came from the artifacts
    direct, sqs, bulk = invocation.results
    assert direct["rotated"] == 1 and direct["failed"] == 0
    assert sqs == {"batchItemFailures": []}
    assert [r["resultCode"] for r in bulk["results"]] == ["Succeeded"]
    assert versions(stack, runtime) == {key: (2, secret) for key, secret in SECRETS.items()}
    assert_shipped_modules_and_granted_calls(function, invocation)
    assert "aws_xray_sdk" not in invocation.modules  # tracing is off in this environment


def test_built_sweep_function_enqueues_a_page_of_keys(seeded: LocalStack) -> None:
    stack = seeded
    function = BuiltFunction.find("sweep")

    invocation = function.invoke([load_event("schedule.json")], stack.environment())

    (report,) = invocation.results
    assert report["listed"] == report["enqueued"] == len(SECRETS), report
    sqs, enqueued = stack.client("sqs"), set()
    while messages := sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            enqueued.update(json.loads(message["Body"])["keys"])
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert enqueued == set(SECRETS)
    assert_shipped_modules_and_granted_calls(function, invocation)


def test_built_functions_load_the_tracer_from_the_layer_when_tracing_is_on(stack: LocalStack) -> None:
    # X-Ray as Lambda sets it up for a sampled invocation; segments go to a daemon address on loopback.
    tracing = {
        "POWERTOOLS_TRACE_DISABLED": "false",
        "_X_AMZN_TRACE_ID": "Root=1-6745a1f0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    for name in ("rotate", "sweep"):
        function = BuiltFunction.find(name)
        event: Any = (
            {"targets": [stack.bucket]} if name == "sweep" else {"bucket": stack.bucket, "keys": ["absent.txt"]}
        )
        invocation = function.invoke([event], {**stack.environment(), **tracing})
        assert invocation.modules["aws_xray_sdk"], name
        assert_shipped_modules_and_granted_calls(function, invocation)
