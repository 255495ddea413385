"""The core on in-memory ports (tests/fakes.py): the engine, the rotate route and the sweep, with no
server, no SDK call and no clock — the fast tier `make unit` runs. The same behaviours are proven
against moto, LocalStack and the emulator in tests/integration."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from rewrap.core.config import Settings, SweepTarget
from rewrap.core.dispatch import rotate_event
from rewrap.core.engine import Engine, Status
from rewrap.core.ports import ObjectBody, ObjectHead, ObjectRef
from rewrap.core.sweep import SweepPosition, SweepRun, SweepTools, run_sweep, sweep_event
from rewrap.deadline import SYSTEM_CLOCK, Clock, Deadline
from rewrap.errors import UnsupportedEventError
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import load_event
from tests.fakes import MemoryBucket, MemoryQueue, VersionBumpKms

BUCKET = "unit-bucket"


@dataclass
class Services:
    """What the rotate route and the sweep need, over the fakes (the Runtime's shape)."""

    settings: Settings
    store: MemoryBucket
    kms: VersionBumpKms
    engine: Engine
    queue: MemoryQueue = field(default_factory=MemoryQueue)
    handed_over: list[dict[str, Any]] = field(default_factory=list)
    clock: Clock = SYSTEM_CLOCK
    notifier: Any = None

    @property
    def dead_letters(self) -> MemoryQueue:
        return self.queue

    @property
    def rotate_queue(self) -> MemoryQueue:
        return self.queue

    def continue_async(self, context: Any, payload: dict[str, Any]) -> None:
        self.handed_over.append(payload)


@pytest.fixture
def services() -> Services:
    settings = Settings(key_tag="unit-key", buckets=frozenset({BUCKET}), kms_rate_limit=0, concurrency=4)
    store, kms = MemoryBucket(), VersionBumpKms(newest=2)
    return Services(settings, store, kms, Engine(settings, store, kms))


def seed(services: Services) -> dict[str, bytes]:
    t = VersionBumpKms.token
    bodies = {
        "a.json": json.dumps({"secret": t(b"alpha"), "note": "kept as is"}).encode(),
        "b.ndjson": b"\n".join(json.dumps({"row": i, "t": t(f"row-{i}".encode())}).encode() for i in range(50)),
        "plain.txt": b"nothing to see \xff\xfe here",
    }
    for key, body in bodies.items():
        services.store.put(BUCKET, key, body)
    services.store.put(BUCKET, "envelope.bin", b"\x00sealed", {"wrapped-key": t(b"data-key")})
    return bodies


def refs(*keys: str) -> list[ObjectRef]:
    return [ObjectRef(BUCKET, k) for k in keys]


def test_engine_rotates_text_and_envelopes_and_keeps_every_other_byte(services: Services) -> None:
    bodies = seed(services)
    results = services.engine.rotate(refs("a.json", "b.ndjson", "plain.txt", "envelope.bin"))

    assert [r.status for r in results] == [Status.ROTATED, Status.ROTATED, Status.NO_TOKENS, Status.ROTATED]
    assert services.store.body(BUCKET, "a.json") == bodies["a.json"].replace(b"ncpkms:v1:", b"ncpkms:v2:")
    assert services.store.body(BUCKET, "b.ndjson") == bodies["b.ndjson"].replace(b"ncpkms:v1:", b"ncpkms:v2:")
    assert services.store.body(BUCKET, "plain.txt") == bodies["plain.txt"]
    assert services.store.objects[BUCKET, "envelope.bin"].metadata["wrapped-key"].startswith("ncpkms:v2:")
    assert services.kms.counts.requests == 1  # every token of every object in one request


def test_second_pass_writes_nothing(services: Services) -> None:
    seed(services)
    services.engine.rotate(refs("a.json", "envelope.bin"))
    writes = services.store.writes

    again = services.engine.rotate(refs("a.json", "envelope.bin"))

    assert [r.status for r in again] == [Status.CURRENT, Status.CURRENT]
    assert services.store.writes == writes


def test_a_writer_between_read_and_write_wins_and_nothing_is_clobbered(services: Services) -> None:
    seed(services)

    def concurrent_writer(ref: ObjectRef) -> None:
        services.store.before_write = None
        services.store.put(ref.bucket, ref.key, b"written by someone else")

    services.store.before_write = concurrent_writer
    (result,) = services.engine.rotate(refs("a.json"))

    assert result.status is Status.FAILED and result.error is not None and result.error.retryable
    assert services.store.body(BUCKET, "a.json") == b"written by someone else"


def test_dry_run_reports_and_writes_nothing(services: Services) -> None:
    seed(services)
    results = services.engine.rotate(refs("a.json", "envelope.bin"), dry_run=True)
    assert {r.status for r in results} == {Status.WOULD_ROTATE}
    assert services.store.writes == 0


class ReadsTogether(MemoryBucket):
    """Each first read waits until ``parties`` are in flight: every one of them is sized by the same allowance."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.together = threading.Barrier(parties, timeout=10)

    def read_small(self, ref: ObjectRef, limit: int) -> tuple[ObjectHead, ObjectBody | None] | None:
        self.together.wait()
        return super().read_small(ref, limit)


def test_envelopes_whose_bodies_hold_no_token_are_copied_in_one_wave_without_holding_their_bodies() -> None:
    # Given 6 envelopes of 900 KiB read at once under a 4 MiB budget: their bodies all come with their heads,
    # and 3 of them would fill a wave (three quarters of the budget)
    settings = Settings(key_tag="unit-key", buckets=frozenset({BUCKET}), kms_rate_limit=0, concurrency=6)
    store, kms = ReadsTogether(parties=6), VersionBumpKms(newest=2)
    noise = random.Random(3).randbytes(900 * 1024).replace(b"n", b"N")
    keys = [f"sealed-{i}.bin" for i in range(6)]
    for key in keys:
        store.put(BUCKET, key, noise, {"wrapped-key": VersionBumpKms.token(key.encode())})
    engine = Engine(settings, store, kms, memory_budget_bytes=4 * 1024 * 1024)

    # When
    results = engine.rotate(refs(*keys))

    # Then a copy needs no body: the bodies were let go once scanned, all six meet KMS in one request
    assert [r.status for r in results] == [Status.ROTATED] * 6
    assert kms.counts.requests == 1
    assert all(store.body(BUCKET, key) == noise for key in keys)
    assert all(store.objects[BUCKET, key].metadata["wrapped-key"].startswith("ncpkms:v2:") for key in keys)


def test_an_event_key_found_only_as_sent_is_rotated_in_the_same_pass(services: Services) -> None:
    # Given an object named with a literal "%20", one whose decoded name exists beside a decoy, and one gone
    t, store = VersionBumpKms.token, services.store
    store.put(BUCKET, "odd%20name.json", t(b"only as sent").encode())
    store.put(BUCKET, "a b.json", t(b"decoded").encode())
    store.put(BUCKET, "a%20b.json", t(b"decoy").encode())
    asked = [
        ObjectRef(BUCKET, "odd name.json", as_sent="odd%20name.json"),
        ObjectRef(BUCKET, "a b.json", as_sent="a%20b.json"),
        ObjectRef(BUCKET, "gone.json", as_sent="gone%2Ejson"),
    ]

    # When the engine is given the decoded keys, each with its key as sent
    results = services.engine.rotate(asked)

    # Then the first is rotated under the key as sent, the second under its decoded key, the decoy is not read
    assert [(r.ref.key, r.status) for r in results] == [
        ("odd%20name.json", Status.ROTATED),
        ("a b.json", Status.ROTATED),
        ("gone%2Ejson", Status.MISSING),
    ]
    assert store.body(BUCKET, "odd%20name.json") == t(b"only as sent", 2).encode()
    assert store.body(BUCKET, "a%20b.json") == t(b"decoy").encode()
    assert sorted(store.reads) == sorted(["odd name.json", "odd%20name.json", "a b.json", "gone.json", "gone%2Ejson"])
    assert (store.writes, services.kms.counts.requests) == (2, 1)  # one pass: both objects' tokens in one request


def test_an_object_named_both_decoded_and_as_sent_is_written_once(services: Services) -> None:
    services.store.put(BUCKET, "odd%20name.json", VersionBumpKms.token(b"x").encode())
    asked = [ObjectRef(BUCKET, "odd name.json", as_sent="odd%20name.json"), ObjectRef(BUCKET, "odd%20name.json")]

    results = services.engine.rotate(asked)

    assert [(r.ref.key, r.status) for r in results] == [("odd%20name.json", Status.ROTATED)] * 2
    assert services.store.writes == 1


def test_eventbridge_messages_naming_keys_as_sent_are_rotated_in_one_engine_pass(services: Services) -> None:
    t = VersionBumpKms.token
    services.store.put(BUCKET, "odd%20name.json", t(b"only as sent").encode())
    services.store.put(BUCKET, "a b.json", t(b"decoded").encode())
    records = []
    for key in ("odd%20name.json", "a%20b.json"):
        event = load_event("eventbridge-s3.json")
        event["detail"]["bucket"]["name"], event["detail"]["object"]["key"] = BUCKET, key
        records.append({"eventSource": "aws:sqs", "messageId": key, "body": json.dumps(event)})

    response = rotate_event({"Records": records}, LambdaContext(), services)

    assert response == {"batchItemFailures": []}
    assert services.store.body(BUCKET, "odd%20name.json") == t(b"only as sent", 2).encode()
    assert services.store.body(BUCKET, "a b.json") == t(b"decoded", 2).encode()
    assert services.kms.counts.requests == 1  # both objects' tokens in one KMS request: one engine pass


def test_rotate_route_answers_sqs_with_only_retryable_failures(services: Services) -> None:
    seed(services)
    services.store.put(BUCKET, "broken.txt", b"ncpkms:v1:@@@@")
    record = {"eventSource": "aws:sqs", "messageId": "m-ok", "body": json.dumps({"bucket": BUCKET, "keys": ["a.json"]})}
    broken = dict(record, messageId="m-broken", body=json.dumps({"bucket": BUCKET, "keys": ["broken.txt"]}))

    response = rotate_event({"Records": [record, broken]}, LambdaContext(), services)

    assert response == {"batchItemFailures": []}  # the malformed token is permanent: parked, not retried
    assert [json.loads(body)["keys"] for body, _ in services.queue.parked] == [["broken.txt"]]
    assert services.store.body(BUCKET, "a.json").count(b"ncpkms:v2:") == 1


def test_an_sqs_batch_of_census_and_rotate_requests_gets_one_answer_from_both_routes(services: Services) -> None:
    bodies = seed(services)
    services.settings = replace(services.settings, report_prefix=f"s3://{BUCKET}/reports/")
    requests = {
        "m-census": {"bucket": BUCKET, "keys": ["b.ndjson"], "mode": "census", "runId": "r1"},
        "m-rotate": {"bucket": BUCKET, "keys": ["a.json"]},
        "m-refused": {"bucket": "someone-elses-bucket", "keys": ["x"]},
    }
    records = [{"eventSource": "aws:sqs", "messageId": i, "body": json.dumps(b)} for i, b in requests.items()]

    response = rotate_event({"Records": records}, LambdaContext(), services)

    assert response == {"batchItemFailures": []}  # the refused request is permanent: parked
    assert [json.loads(body)["bucket"] for body, _ in services.queue.parked] == ["someone-elses-bucket"]
    assert services.store.body(BUCKET, "b.ndjson") == bodies["b.ndjson"]  # counted, never written
    assert services.store.body(BUCKET, "a.json").count(b"ncpkms:v2:") == 1
    (partial,) = [name for name in services.store.reports if "/census/r1/part-" in name]
    assert json.loads(services.store.reports[partial])["keys"] == 1


def test_sweep_enqueues_every_key_once_and_hands_over_when_time_runs_out(services: Services) -> None:
    for i in range(23):
        services.store.put(BUCKET, f"k/{i:02d}", b"x")
    settings = Settings(key_tag="unit-key", buckets=frozenset({BUCKET}), sweep_page_size=5, sweep_keys_per_message=4)

    class TwoPages(Deadline):
        def __init__(self) -> None:
            super().__init__(None)
            self.pages = 2

        def expired(self, margin: float = 0.0) -> bool:
            self.pages -= 1
            return self.pages <= 0

    position: SweepPosition | None = SweepPosition()
    invocations = 0
    while position is not None:
        run = SweepRun("", targets=[SweepTarget(BUCKET, "k/")])
        report = run_sweep(run, position, SweepTools(settings, services.store, services.queue), TwoPages())
        position, invocations = report.resume_at, invocations + 1

    keys = [k for request in services.queue.requests for k in request["keys"]]
    assert sorted(keys) == [f"k/{i:02d}" for i in range(23)] and len(keys) == len(set(keys))
    assert invocations == 3


def test_sweep_event_refuses_buckets_outside_the_allow_list(services: Services) -> None:
    from rewrap.errors import ConfigError

    with pytest.raises(ConfigError, match="outside REWRAP_BUCKETS"):
        sweep_event({"targets": ["someone-elses-bucket"]}, LambdaContext(), services)
    assert services.queue.requests == []


def test_a_foreign_message_on_the_direct_sns_route_is_refused_with_its_reason(services: Services) -> None:
    """Powertools' own sample SNS event ("Hello from SNS!") is no S3 notification: the invocation fails, so the
    asynchronous invocation's failure destination keeps it, instead of answering total 0 and forgetting it."""
    # The shape of Powertools' sample SNS event (its tests/events/snsEvent.json), trimmed to what is read.
    sns = {"Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e", "Message": "Hello from SNS!"}
    event = {"Records": [{"EventVersion": "1.0", "EventSource": "aws:sns", "Sns": {**sns, "Subject": "TestInvoke"}}]}
    with pytest.raises(UnsupportedEventError, match="not JSON"):
        rotate_event(event, LambdaContext(), services)  # type: ignore[arg-type]


def test_an_sns_message_holding_an_s3_notification_is_rotated_and_not_refused(services: Services) -> None:
    seed(services)
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": "a.json"}},
            }
        ]
    }
    event = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {"MessageId": "m-1", "Type": "Notification", "Message": json.dumps(notification)},
            }
        ]
    }
    answer = rotate_event(event, LambdaContext(), services)  # type: ignore[arg-type]
    assert (answer["total"], answer["rotated"]) == (1, 1)
