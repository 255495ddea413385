"""Nothing lost, nothing corrupted: the fault-injection soak (rewrap_local.soak) at test scale, and
single faults with their exact outcome. Every object is checked against its original after every run:
tokens decrypt to the same plaintext, every other byte/header/metadata value/tag is unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rewrap_local.soak import FAULT_KINDS, WRITE_OPS, Soak, SoakConfig, run_soak
from rewrap_local.stack import LocalStack

pytestmark = pytest.mark.s3

# Permanent failures a fault may legitimately cause (re-run once the cause is fixed); a transient
# fault must never end as a permanent failure.
EXPECTED_PERMANENT = {"verification-failed", "secret-invalid"}


@pytest.fixture
def small(stack: LocalStack) -> Iterator[Soak]:
    """One object of every kind (two large, streamed ones), their key rotated once."""
    with Soak(stack, SoakConfig(objects=10, large_objects=2, seed=11)) as soak:
        soak.rotate_keys()
        yield soak


def intact(soak: Soak) -> dict[str, int]:
    """Check every object now; nothing may be lost or corrupted. Counts per state."""
    verdicts = soak.check()
    assert soak.report.problems == {}
    states: dict[str, int] = {}
    for verdict in verdicts:
        states[verdict.state] = states.get(verdict.state, 0) + 1
    return states


def parked(soak: Soak) -> int:
    attributes = soak.sqs.get_queue_attributes(
        QueueUrl=soak.stack.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def large_keys(soak: Soak) -> list[str]:
    return [key for key, original in soak.corpus.originals.items() if original.kind == "large"]


def test_soak_every_fault_alone_and_mixed_loses_and_corrupts_nothing(stack: LocalStack) -> None:
    # Given ~120 objects of every kind; round 1 injects each fault kind alone, round 2 random mixes
    report = run_soak(stack, SoakConfig(objects=120, rounds=2, seed=7))
    out = Path(__file__).resolve().parents[2] / "out"  # the figures, per backend, for the record
    out.mkdir(exist_ok=True)
    (out / f"soak-{stack.backend}.txt").write_text(report.render())

    # Then every object converged to the newest version or was deleted by a racing writer, and
    # after every run none was lost or corrupted
    assert report.lost == 0 and report.corrupted == 0, report.render()
    assert report.stranded == 0 and report.final["current"] + report.final["absent"] == 120, report.render()
    assert 0 < report.final["absent"] <= report.faults["s3:delete"]  # deleted by a racing writer
    assert report.checks >= len(FAULT_KINDS)
    injected = {name for name, count in report.faults.items() if count}
    emulator_kinds = {"throttle", "server-error", "timeout", "reset", "non-json", "short-reply", "extra-item"}
    emulator_kinds |= {"bad-pattern", "lower-version", "corrupt"}
    expected = {f"kms:{kind}" for kind in emulator_kinds}
    expected |= {k for k in FAULT_KINDS if k.split(":")[0] in ("s3", "invocation", "secret", "app")}
    expected.add("app:write-back")  # the application next door wrote back cached tokens under copied stamps
    assert expected <= injected, sorted(expected - injected)
    assert min(report.retries[name] for name in ("kms (client)", "s3 (botocore)", "sqs redeliveries")) > 0
    assert report.retries["kms auth refreshes"] >= 1  # the secret rotated mid-run
    permanent = {name.split()[1] for name in report.failures if name.split()[0] in ("PermanentFailure", "parked")}
    assert permanent - {"maxReceiveCount"} <= EXPECTED_PERMANENT, report.failures


def test_crash_before_completing_a_multipart_rewrite_leaves_the_object_whole(small: Soak) -> None:
    # Given: the sandbox dies right before CompleteMultipartUpload; nothing after that reaches S3
    keys = large_keys(small)
    small.s3_faults.arm_crash(1, op="CompleteMultipartUpload")

    # When S3 Batch Operations invokes rotate on the large objects
    failed = small.invoke_tasks(keys)

    # Then the invocation crashed, its upload was left behind (never aborted), and both objects are
    # byte-for-byte what they were, still under the old key version
    assert small.report.invocations["crashed"] == 1 and failed == keys
    assert small.s3_faults.injected_at["crash CompleteMultipartUpload"] == 1
    assert small.corpus.s3.list_multipart_uploads(Bucket=small.stack.bucket).get("Uploads")
    assert intact(small)["pending"] >= 2
    # and the retried tasks converge
    small.deliver_batch_operations(small.corpus.keys())
    small.converge()
    assert small.report.final == {"current": 10}


@pytest.mark.parametrize("after", [1, 3, 6, 10])
def test_crash_at_any_point_of_an_sqs_batch_converges_on_redelivery(small: Soak, after: int) -> None:
    small.s3_faults.arm_crash(after)

    small.deliver_sqs(small.corpus.keys())  # the crashed batch returns to the queue and is redelivered

    assert small.report.invocations["crashed"] == 1
    assert small.report.retries["sqs redeliveries"] >= 1
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}
    assert parked(small) == 0


@pytest.mark.parametrize("race", ["overwrite", "delete"])
def test_a_racing_writer_wins_on_every_write_path(small: Soak, race: str) -> None:
    # Given another writer that overwrites (or deletes) the object just before each kind of write
    # goes out: PutObject (text), CopyObject (envelope) and CompleteMultipartUpload (large)
    for op in WRITE_OPS:
        small.s3_faults.add(race, frozenset({op}), 1)

    small.deliver_batch_operations(small.corpus.keys())

    # Then each write was refused: the other writer's content is kept, a deleted object stays deleted
    assert {f"{race} {op}" for op in WRITE_OPS} <= set(small.s3_faults.injected_at)
    states = intact(small)
    if race == "delete":
        assert states["absent"] == 3
        assert not small.report.failures  # vanished objects are "missing", not failures
    else:
        assert small.report.failures == {"TemporaryFailure object-changed": 3}
    small.converge()
    assert small.report.final["pending"] == 0


def test_the_application_rewriting_a_body_with_its_metadata_wins_on_every_write_path(small: Soak) -> None:
    # Given the application next door rewriting an object (a new body, the user metadata it read carried along,
    # rewrap's stamps included) just before each kind of write goes out
    for op in WRITE_OPS:
        small.s3_faults.add("app:rewrite", frozenset({op}), 1)

    small.deliver_batch_operations(small.corpus.keys())

    # Then each write was refused and the bucket holds the application's object; the retries rotate it
    assert {f"app:rewrite {op}" for op in WRITE_OPS} <= set(small.s3_faults.injected_at)
    assert small.application.written["app:rewrite"] == 3
    assert small.report.failures == {"TemporaryFailure object-changed": 3}
    intact(small)
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}


def test_a_metadata_only_update_is_never_reverted_where_s3_lets_rewrap_see_it(small: Soak) -> None:
    # Given the application updating only an object's metadata (its ETag stays) just before rewrap's self-copy of
    # an envelope, a GET conditional on a HEAD's ETag, and a HEAD
    small.s3_faults.add("app:metadata", frozenset({"CopyObject"}), 1)
    small.s3_faults.add("app:metadata", frozenset({"GetObject"}), 1)
    small.s3_faults.add("app:metadata", frozenset({"HeadObject"}), 1, any_request=True)

    small.deliver_batch_operations(small.corpus.keys())

    # Then every object keeps the application's metadata (the audit compares it) and all converge
    assert "app:metadata CopyObject" in small.s3_faults.injected_at
    assert small.application.written["app:metadata"] == small.s3_faults.injected["app:metadata"]
    intact(small)
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}


def test_old_tokens_written_back_under_rewraps_stamps_are_rotated(small: Soak) -> None:
    # Given every object rotated to v2 and stamped, then the application writing back the v1 tokens it cached
    # (of the same length) with the metadata it read, rewrap's stamps included
    small.deliver_sqs(small.corpus.keys())
    small.converge()
    assert small.report.final == {"current": 10}

    small.write_back(len(small.application.cached))  # sent as the sweep sends, to a container that keeps v2

    # Then no copied stamp hides them: every object is on v2 again
    assert small.report.faults["app:write-back"] == len(small.application.cached) > 0
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}


def test_failed_multipart_part_aborts_the_upload_and_is_retried(small: Soak) -> None:
    keys = large_keys(small)
    small.s3_faults.add("part-failure", frozenset({"UploadPart"}), 4)  # every attempt botocore makes (1 + 3)

    failed = small.invoke_tasks(keys)

    assert len(failed) == 1 and small.report.failures == {"TemporaryFailure s3-unavailable": 1}
    assert not small.corpus.s3.list_multipart_uploads(Bucket=small.stack.bucket).get("Uploads")
    assert intact(small)
    assert small.invoke_tasks(failed) == []


def test_slowdown_and_rejected_conditions_are_retried_never_parked(small: Soak) -> None:
    small.s3_faults.add("slowdown", frozenset({"HeadObject", "GetObject", "PutObject"}), 5)
    small.s3_faults.add("precondition", WRITE_OPS, 3, status=412, code="PreconditionFailed")

    small.deliver_sqs(small.corpus.keys())

    assert small.s3_faults.injected["s3:precondition"] == 3 and small.s3_faults.retries >= 1
    assert small.report.retries["sqs redeliveries"] >= 1 and parked(small) == 0
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}


def test_secret_rotated_mid_run_is_picked_up_without_a_failure(small: Soak) -> None:
    keys = small.corpus.keys()
    small.deliver_sqs(keys[:3])  # a warm container with the old credentials cached
    refused_before = small.stack.kms.stats.auth_failures

    small.rotate_secret()  # new access key in the secret and in NCP; the old one is revoked
    small.deliver_sqs(keys[3:])

    assert small.stack.kms.stats.auth_failures > refused_before  # the cached key was refused once…
    assert small.report.retries["sqs redeliveries"] == 0 and parked(small) == 0  # …and re-read at once
    small.converge()
    assert small.report.final == {"current": 10}


def test_a_fixed_secret_is_picked_up_by_a_warm_container(small: Soak) -> None:
    # Given a warm container, then the secret replaced by JSON without secretKey and the key revoked
    keys = small.corpus.keys()
    small.deliver_sqs(keys[:2])
    old_access_key = small.credentials[-1]["accessKey"]
    small.put_secret({"accessKey": "AKIDINCOMPLETE"})
    small.stack.kms.remove_credentials(old_access_key)

    small.deliver_sqs(keys[2:])

    # Then the work fails permanently with a clear reason and is parked, nothing is touched
    assert parked(small) >= 1
    assert intact(small)["pending"] >= 1
    # and once the secret is fixed, the same warm container rotates the redriven messages
    small.rotate_secret()
    small.converge()
    assert set(small.report.failures) == {"parked secret-invalid"}
    assert small.report.final == {"current": 10} and small.report.invocations["cold starts"] == 0


def test_unreachable_secrets_manager_is_retryable_and_converges(small: Soak) -> None:
    small.queue_invocation_fault("secrets-unreachable")  # a cold container that cannot reach it

    small.deliver_sqs(small.corpus.keys())

    first = small.responses[0]
    assert first["batchItemFailures"]  # retryable: returned to the queue, not parked
    assert parked(small) == 0 and small.report.faults["secret:unreachable"] == 1
    small.converge()
    assert small.report.final == {"current": 10} and small.report.problems == {}


def test_running_out_of_time_mid_batch_writes_nothing_half(small: Soak) -> None:
    small.queue_invocation_fault("out-of-time")

    failed = small.invoke_tasks(small.corpus.keys())

    assert failed, "the short invocation should not have finished everything"
    assert {name.split()[0] for name in small.report.failures} == {"TemporaryFailure"}
    assert intact(small)
    small.deliver_batch_operations(failed)
    small.converge()
    assert small.report.final == {"current": 10}


def test_a_well_formed_reply_that_does_not_decrypt_fails_only_its_own_object(small: Soak) -> None:
    # Tokens at v1, key at v2: a "lower-version" reply to a v1 token is labelled v1 but sealed under
    # v2. The client cannot tell it from an already-current token; verification decrypts it, KMS
    # refuses the whole list, and only that token's object may fail (not every object batched with it)
    text = [key for key, original in small.corpus.originals.items() if original.kind in ("bare", "json", "env")]
    small.stack.kms.inject("lower-version", times=1, key_tag=small.stack.key_tag)

    assert small.invoke_tasks(text) == []  # one invocation, one re-encrypt request for all tokens

    assert small.report.failures == {"PermanentFailure verification-failed": 1}
    assert intact(small) == {"current": 4, "pending": 6}  # 2 of the 3 rotated; empty/plain have no tokens


def test_the_check_catches_a_corrupt_reply_when_verification_is_off(stack: LocalStack) -> None:
    # The soak's check is not vacuous: without REWRAP_VERIFY a well-formed but corrupt reply is
    # written, and the check finds it. (With verification on, the soak sees none.)
    config = SoakConfig(objects=10, large_objects=0, seed=3, environment={"REWRAP_VERIFY": "false"})
    with Soak(stack, config) as soak:
        soak.rotate_keys()
        stack.kms.inject("corrupt", times=1, action="re-encrypt")
        soak.deliver_sqs(soak.corpus.keys())
        soak.check()
    assert list(soak.report.problems.values()) == ["corrupted: a token decrypts to different data"]
