"""Event routes → work units, on the real sample payloads in events/ and on malformed ones."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rewrap.core.events import MAX_KEYS_PER_REQUEST, RequestKind, Trigger, message_refs, parse
from rewrap.core.ports import ObjectRef
from rewrap.errors import UnsupportedEventError
from rewrap_local.payloads import EVENTS_DIR, load_event

EVENTS = EVENTS_DIR
BUCKET = "rewrap-demo-bucket"
UNICODE_KEY = "docs/hello world+ünï.env"  # encoded in notifications as docs/hello+world%2B%C3%BCn%C3%AF.env


def ref(key: str, version_id: str | None = None) -> ObjectRef:
    return ObjectRef(BUCKET, key, version_id)


load = load_event


# file → (kind, [(unit id, refs, note)])
EXPECTED: dict[str, tuple[Trigger, list[tuple[str, list[ObjectRef], str]]]] = {
    "s3-put.json": (Trigger.S3, [("0", [ref(UNICODE_KEY)], ""), ("1", [ref("data/records.ndjson")], "")]),
    "eventbridge-s3.json": (
        Trigger.EVENTBRIDGE,
        [("babb2543-0925-4f48-a678-15fe2ad6ccca", [ref(UNICODE_KEY)], "")],
    ),
    "rotate-request.json": (
        Trigger.ROTATE_REQUEST,
        [
            (
                "request",
                [
                    ref("secrets/api-token.txt"),
                    ref("docs/config.json"),
                    ref("data/records.ndjson"),
                    ref("envelopes/report.bin", "Ld0Xq0pA3pTQd5s1bVxTR6mCq7cJQ2Gz"),
                    ref(UNICODE_KEY),  # direct requests carry raw keys: nothing is decoded
                ],
                "",
            )
        ],
    ),
    "batch-ops-1.0.json": (
        Trigger.BATCH_OPERATIONS,
        [
            ("VB2BNZAptnxZHwRW0XVm", [ref("secrets/api-token.txt")], ""),
            ("zG6sWmMHuw0aPboN5+L+", [ref(UNICODE_KEY)], ""),
        ],
    ),
    "batch-ops-2.0.json": (
        Trigger.BATCH_OPERATIONS,
        [
            ("0WbN3Jk07RBOY5tuGCsB", [ref("envelopes/report.bin", "Ld0Xq0pA3pTQd5s1bVxTR6mCq7cJQ2Gz")], ""),
            ("hqGjUnGEKkc3vDwhEOuh", [ref("data/records.ndjson", "kN2e0fQ9.qcLr7oP3Zx1yTb8MhUvW4sA")], ""),
        ],
    ),
    "s3-test-event.json": (Trigger.SQS, [("46dd04d1-3535-41f4-a220-99f8a42e76a1", [], "s3:TestEvent")]),
    "sqs-s3.json": (Trigger.SQS, [("87b56e4d-5fcf-4ab8-ae7e-cb31b4bce4d7", [ref("secrets/api-token.txt")], "")]),
    "sqs-sns-s3.json": (Trigger.SQS, [("8c9e9e02-dbcf-416c-a07b-b1fb436abf50", [ref("docs/config.json")], "")]),
    "sqs-eventbridge-s3.json": (
        Trigger.SQS,
        [("5e246b44-9a77-4e40-a134-2a7ad44a8ea4", [ref("envelopes/report.bin")], "")],
    ),
    "sqs-rotate-request.json": (
        Trigger.SQS,
        [
            (
                "ab8f66c8-82f9-48aa-a87a-d0859b77fabb",
                [
                    ref(k)
                    for k in (
                        "secrets/api-token.txt",
                        "docs/config.json",
                        "data/records.ndjson",
                        "envelopes/report.bin",
                        UNICODE_KEY,
                    )
                ],
                "",
            )
        ],
    ),
    "sqs-mixed.json": (
        Trigger.SQS,
        [
            ("e304805c-2f44-4514-acc4-ece3f7249926", [ref("data/records.ndjson")], ""),
            ("6dcdf102-eaf8-42c7-ad60-1507ba87e462", [ref(UNICODE_KEY)], ""),  # SNS-wrapped, decoded
            ("46dd04d1-3535-41f4-a220-99f8a42e76a1", [], "s3:TestEvent"),
            ("2a433d42-fc11-45ac-a7e2-1d1782504efb", [ref("envelopes/report.bin"), ref(UNICODE_KEY)], ""),
        ],
    ),
}
NOT_FOR_THE_ROTATE_FUNCTION = {"schedule.json"}  # the sweep function's trigger


def test_every_sample_event_has_expectations() -> None:
    names = {p.name for p in EVENTS.glob("*.json")}

    assert names, "events/ holds no sample payloads"
    assert names == set(EXPECTED) | NOT_FOR_THE_ROTATE_FUNCTION


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event(name: str) -> None:
    kind, units = EXPECTED[name]
    if not (EVENTS / name).exists():
        pytest.fail(f"events/{name} is missing")

    invocation = parse(load(name))

    assert invocation.kind is kind
    assert [(u.id, u.refs, u.note) for u in invocation.units] == units
    assert all(u.error is None for u in invocation.units)
    assert invocation.refs == [r for _, refs, _ in units for r in refs]


def test_rotate_request_dry_run_flag() -> None:
    event = load("rotate-request.json")

    assert parse(event).dry_run is False
    assert parse({**event, "dryRun": True}).dry_run is True
    assert parse({k: v for k, v in event.items() if k != "dryRun"}).dry_run is None
    assert parse(load("s3-put.json")).dry_run is None


def test_a_sweep_runs_rotate_requests_name_their_run_and_census_requests_stay_census() -> None:
    request = {"bucket": BUCKET, "keys": ["a"], "runId": "20261205T000000Z-abc"}
    (direct,) = parse(request).units
    message = {"eventSource": "aws:sqs", "messageId": "m", "body": json.dumps(request)}
    (queued,) = parse({"Records": [message]}).units
    assert (direct.request, direct.run_id) == (queued.request, queued.run_id) == (RequestKind.ROTATE, request["runId"])
    (census,) = parse({**request, "mode": "census"}).units
    assert (census.request, census.run_id) == (RequestKind.CENSUS, request["runId"])
    assert parse({"bucket": BUCKET, "keys": ["a"]}).units[0].run_id is None  # an event: no run
    with pytest.raises(UnsupportedEventError, match="runId"):
        parse({**request, "runId": "a/b"})


def test_schedule_event_is_not_a_rotate_event() -> None:
    with pytest.raises(UnsupportedEventError, match="detail-type"):
        parse(load("schedule.json"))


# --- key decoding ----------------------------------------------------------------------------------
def s3_record(key: str, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}},
    }


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("caf%C3%A9/%ED%95%9C%EA%B8%80.txt", "café/한글.txt"),
        ("100%25+done", "100% done"),
        ("dir%2Fsub/x%3Dy%26z", "dir/sub/x=y&z"),
        ("plain/key.json", "plain/key.json"),
    ],
)
def test_notification_keys_are_decoded(encoded: str, key: str) -> None:
    direct = parse({"Records": [s3_record(encoded)]})
    batch = parse(
        {
            "invocationSchemaVersion": "1.0",
            "invocationId": "x",
            "job": {"id": "j"},
            "tasks": [{"taskId": "t", "s3Key": encoded, "s3VersionId": None, "s3BucketArn": f"arn:aws:s3:::{BUCKET}"}],
        }
    )

    assert direct.refs == [ref(key)]
    assert batch.refs == [ref(key)]


def test_removal_notifications_need_no_work() -> None:
    invocation = parse({"Records": [s3_record("gone.txt", "ObjectRemoved:Delete"), s3_record("new.txt")]})

    assert [u.refs for u in invocation.units] == [[], [ref("new.txt")]]


def test_eventbridge_deleted_object_needs_no_work() -> None:
    event = load("eventbridge-s3.json")
    event["detail-type"] = "Object Deleted"

    assert parse(event).refs == []


# --- malformed events ------------------------------------------------------------------------------
def sqs(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "body": body, "eventSource": "aws:sqs", "attributes": {}}
            for i, body in enumerate(bodies)
        ]
    }


@pytest.mark.parametrize(
    ("event", "mentions"),
    [
        ({}, "top-level fields: []"),
        ([], "list"),
        ([{"Records": []}], "list"),
        ("s3://bucket/key", "str"),
        (None, "NoneType"),
        ({"Records": []}, "Records"),
        ({"Records": "nope"}, "Records"),
        ({"Records": [{"eventSource": "aws:dynamodb"}]}, "Records"),
        ({"Records": [s3_record("a"), {"eventSource": "aws:sqs", "body": "{}"}]}, "Records"),
        ({"bucket": BUCKET}, "bucket"),
        ({"keys": ["a"]}, "keys"),
        ({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}, "source"),
    ],
    ids=[
        "empty-dict",
        "empty-list",
        "list",
        "string",
        "none",
        "no-records",
        "records-not-list",
        "foreign-records",
        "mixed-sources",
        "request-without-keys",
        "request-without-bucket",
        "foreign-eventbridge",
    ],
)
def test_unrecognised_events_name_what_was_received(event: Any, mentions: str) -> None:
    with pytest.raises(UnsupportedEventError) as caught:
        parse(event)

    assert mentions in str(caught.value)
    assert caught.value.code == "unsupported-event"
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("request_", "mentions"),
    [
        ({"bucket": BUCKET, "keys": []}, "non-empty list"),
        ({"bucket": BUCKET, "keys": "a.txt"}, "non-empty list"),
        ({"bucket": BUCKET, "keys": None}, "non-empty list"),
        ({"bucket": "", "keys": ["a"]}, "bucket"),
        ({"bucket": None, "keys": ["a"]}, "bucket"),
        ({"bucket": BUCKET, "keys": [""]}, "key"),
        ({"bucket": BUCKET, "keys": [42]}, "key"),
        ({"bucket": BUCKET, "keys": [{"versionId": "v"}]}, "key"),
        ({"bucket": BUCKET, "keys": ["k" * 1025]}, "1024"),
        ({"bucket": BUCKET, "keys": ["a"], "dryRun": "yes"}, "dryRun"),
        ({"bucket": BUCKET, "keys": [f"k{i}" for i in range(MAX_KEYS_PER_REQUEST + 1)]}, "at most 1000"),
    ],
    ids=[
        "empty",
        "string",
        "null",
        "blank-bucket",
        "null-bucket",
        "blank-key",
        "number",
        "dict-no-key",
        "long-key",
        "dry-run",
        "1001-keys",
    ],
)
def test_bad_rotate_requests(request_: dict[str, Any], mentions: str) -> None:
    with pytest.raises(UnsupportedEventError, match=mentions):
        parse(request_)


def test_1000_keys_are_accepted() -> None:
    keys = [f"k{i}" for i in range(MAX_KEYS_PER_REQUEST)]

    assert len(parse({"bucket": BUCKET, "keys": keys}).refs) == 1000


def test_s3_record_without_key() -> None:
    record = s3_record("x")
    del record["s3"]["object"]["key"]

    with pytest.raises(UnsupportedEventError, match=r"s3\.object\.key"):
        parse({"Records": [record]})


def test_eventbridge_event_without_key() -> None:
    event = load("eventbridge-s3.json")
    del event["detail"]["object"]

    with pytest.raises(UnsupportedEventError, match=r"detail\.object\.key"):
        parse(event)


def test_bad_sqs_messages_become_unit_errors() -> None:
    record = s3_record("x")
    del record["s3"]["bucket"]
    sns_bad = json.dumps({"Type": "Notification", "Message": "not json"})
    bodies = [
        "not json {",
        "",
        "[1, 2]",
        json.dumps({"hello": "world", "Zed": 1}),
        json.dumps({"Records": [record]}),
        json.dumps({"Records": [{"eventSource": "aws:sqs"}]}),
        sns_bad,
        json.dumps({"bucket": BUCKET, "keys": []}),
        json.dumps({"bucket": BUCKET, "keys": ["fine.txt"]}),
    ]

    invocation = parse(sqs(*bodies))

    assert invocation.kind is Trigger.SQS
    errors = [str(u.error) if u.error else None for u in invocation.units]
    assert [u.id for u in invocation.units] == [f"m{i}" for i in range(len(bodies))]
    assert errors[0] == errors[1] == "SQS message body is not JSON"
    assert "list" in errors[2]
    assert "Zed" in errors[3] and "hello" in errors[3]
    assert "s3.bucket.name" in errors[4]
    assert "not an S3 notification" in errors[5]
    assert "SNS" in errors[6]
    assert "non-empty list" in errors[7]
    assert errors[8] is None
    assert invocation.units[8].refs == [ref("fine.txt")]
    assert invocation.refs == [ref("fine.txt")]  # units in error contribute nothing


def test_unknown_batch_schema() -> None:
    event = load("batch-ops-1.0.json")
    event["invocationSchemaVersion"] = "3.0"

    with pytest.raises(UnsupportedEventError, match=r"'3\.0'"):
        parse(event)


def test_batch_tasks_must_be_a_list() -> None:
    event = load("batch-ops-2.0.json")
    event["tasks"] = {"taskId": "x"}

    with pytest.raises(UnsupportedEventError, match="task list"):
        parse(event)


def test_bad_batch_task_is_a_unit_error() -> None:
    event = load("batch-ops-2.0.json")
    broken = copy.deepcopy(event["tasks"][0])
    del broken["s3Key"]
    event["tasks"] = [broken, "not-a-task", *event["tasks"]]

    units = parse(event).units

    assert [u.error is not None for u in units] == [True, True, False, False]
    assert "key" in str(units[0].error)
    assert units[0].id == "0WbN3Jk07RBOY5tuGCsB"
    assert units[2].refs == [ref("envelopes/report.bin", "Ld0Xq0pA3pTQd5s1bVxTR6mCq7cJQ2Gz")]


def test_message_refs_unwraps_sns_around_eventbridge() -> None:
    inner = json.dumps(load("eventbridge-s3.json"))

    refs, note = message_refs({"Type": "Notification", "Message": inner})

    assert (refs, note) == ([ref(UNICODE_KEY)], "")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_batch_operations_user_arguments_dry_run(value: str, expected: bool) -> None:
    event = load("batch-ops-2.0.json")
    event["job"]["userArguments"]["dryRun"] = value

    assert parse(event).dry_run is expected  # an operator's dry run must never write


# --- direct SNS, EventBridge key encoding, bucket ARNs -------------------------------------------
def test_direct_sns_subscription_records_are_s3_notifications() -> None:
    message = json.dumps({"Records": [s3_record("docs/hello+world%2B%C3%BCn%C3%AF.env")]})
    event = {
        "Records": [
            {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {"MessageId": "m-1", "Message": message}},
            {"EventSource": "aws:sns", "Sns": {"MessageId": "m-2", "Message": json.dumps({"Event": "s3:TestEvent"})}},
            {"EventSource": "aws:sns", "Sns": {"MessageId": "m-3", "Message": "not json"}},
        ]
    }

    invocation = parse(event)

    assert invocation.kind is Trigger.SNS
    assert [(u.id, u.refs, u.note) for u in invocation.units[:2]] == [
        ("m-1", [ref(UNICODE_KEY)], ""),
        ("m-2", [], "s3:TestEvent"),
    ]
    assert isinstance(invocation.units[2].error, UnsupportedEventError)


@pytest.mark.parametrize(
    ("sent", "decoded"),
    [("a%20b%2Bc", "a b+c"), ("plain/key.txt", "plain/key.txt"), ("100%25.txt", "100%.txt"), ("a+b", "a b")],
)
def test_eventbridge_keys_are_decoded_and_the_raw_key_kept(sent: str, decoded: str) -> None:
    event = copy.deepcopy(load("eventbridge-s3.json"))
    event["detail"]["object"]["key"] = sent

    (unit,) = parse(event).units

    assert unit.refs == [ref(decoded)]
    assert [(r.key, r.as_sent) for r in unit.refs] == [(decoded, sent if sent != decoded else None)]


def test_eventbridge_in_sqs_keeps_the_raw_key_too() -> None:
    inner = copy.deepcopy(load("eventbridge-s3.json"))
    inner["detail"]["object"]["key"] = "a%20b"
    (unit,) = parse(sqs(json.dumps(inner))).units
    (found,) = unit.refs
    assert found == ref("a b") and found.as_sent == "a%20b" and found.sent() == ref("a%20b")


@pytest.mark.parametrize("arn", [f"arn:aws:s3:::{BUCKET}", f"arn:aws-cn:s3:::{BUCKET}", BUCKET])
def test_bucket_arns_are_read_after_the_last_colon(arn: str) -> None:
    request = parse({"bucket": arn, "keys": ["k"]})
    task = {"taskId": "t", "s3BucketArn": arn, "s3Key": "k"}
    batch = parse({"invocationSchemaVersion": "1.0", "invocationId": "i", "job": {"id": "j"}, "tasks": [task]})
    assert request.refs == batch.refs == [ref("k")]
