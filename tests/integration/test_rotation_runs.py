"""A rotation run proves itself: the sweep's rotate requests answer with partials, and a complete full
run's merge gives the verdict a census of its targets gives right after, without reading them again."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

import rewrap_cli.main as cli
from functions.rotate.app import lambda_handler as rotate
from functions.sweep.app import lambda_handler as sweep
from rewrap.adapters.s3 import S3Store
from rewrap.app.runtime import get_runtime, reset_runtime
from rewrap.core.census import Census
from rewrap.core.census_runs import RunMerge, merge_run
from rewrap.core.census_taker import CensusTaker
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue
from rewrap_local.stack import LocalStack, environment
from tests.integration.test_corpus import seed_corpus
from tests.integration.test_incremental_sweep import next_second

REPORTS = "reports/"


@pytest.fixture
def fleet(handler_env: LocalStack) -> Iterator[LocalStack]:
    """The handlers' environment with reports, partials and checkpoints under s3://bucket/reports/, and
    messages of 3 keys so a run has several partials."""
    reset_runtime()
    env = {"REWRAP_REPORT_PREFIX": f"s3://{handler_env.bucket}/{REPORTS}", "REWRAP_SWEEP_KEYS_PER_MESSAGE": "3"}
    with environment(env):
        yield handler_env
    reset_runtime()


def rotation_run(stack: LocalStack, **extra: Any) -> dict[str, Any]:
    """A full rotation run of c/ through the real handlers: sweep, then the queue drained through rotate."""
    answer: dict[str, Any] = sweep({"targets": [f"{stack.bucket}/c/"], **extra}, LambdaContext())
    drain_queue(stack.client("sqs"), stack.queue_url, rotate)
    return answer


def run_folder(stack: LocalStack, run_id: str) -> list[tuple[str, bytes]]:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{REPORTS}census/{run_id}/").get("Contents", [])
    return [
        (item["Key"].rpartition("/")[2], s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read())
        for item in listed
    ]


def merged(stack: LocalStack, run_id: str, records: list[tuple[str, bytes]] | None = None) -> RunMerge:
    url = f"s3://{stack.bucket}/{REPORTS}census/{run_id}/"
    return merge_run(records if records is not None else run_folder(stack, run_id), url, 2, stack.key_tag)


def direct_census(stack: LocalStack) -> Census:
    census = Census(min_version=2, key_tag=stack.key_tag)
    return CensusTaker(S3Store(stack.client("s3")), default_key_tag=stack.key_tag).run(stack.bucket, "c/", census)


def add_the_hard_cases(stack: LocalStack) -> None:
    """Beside the forms of the corpus: an opaque zip holding a token, an archived object, a poison object
    (a malformed token beside a good v1 one) and an object of another key, current for its key."""
    kms = get_runtime().kms
    s3 = stack.client("s3")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("secret.txt", "k=" + kms.encrypt(stack.key_tag, [b"zipped"])[0])
    (good,) = kms.encrypt(stack.key_tag, [b"poisoned"])
    other = stack.kms.create_key()
    (theirs,) = kms.encrypt(other, [b"another key"])
    s3.put_object(Bucket=stack.bucket, Key="c/bundle.zip", Body=archive.getvalue())
    s3.put_object(Bucket=stack.bucket, Key="c/cold.txt", Body=b"?", StorageClass="GLACIER")
    s3.put_object(Bucket=stack.bucket, Key="c/poison.txt", Body=f"ok={good} broken=ncpkms:v1:@@@@\n".encode())
    s3.put_object(Bucket=stack.bucket, Key="c/theirs.txt", Body=theirs.encode(), Metadata={"ncpkms-key-tag": other})


def same_verdict(run: RunMerge, census: Census) -> None:
    direct, from_run = census.judge(), run.census.judge()
    assert from_run.verdict == direct.verdict, (run.judge_lines()[1], direct.lines)
    assert (run.census.stale_objects, run.census.unknown) == (census.stale_objects, census.unknown)
    assert run.census.objects == census.objects


def test_a_full_run_over_every_form_proves_what_a_census_right_after_it_says(fleet: LocalStack) -> None:
    # Given every form a bucket hides tokens in, on v1, and the key rotated
    seed_corpus(fleet, get_runtime())
    fleet.kms.rotate(fleet.key_tag)

    # When a full rotation run goes through the fleet
    answer = rotation_run(fleet)

    # Then its partials merge into a complete run, SAFE, as the census taken right after it says
    run = merged(fleet, answer["runId"])
    assert run.complete and run.mode == "rotate" and run.accounted == run.enqueued == 11
    census = direct_census(fleet)
    same_verdict(run, census)
    assert census.judge().verdict == "SAFE" and run.judge_lines()[0] == 0
    assert run.rotation.statuses == {"rotated": 10, "no-tokens": 1}
    assert run.rotation.found == {fleet.key_tag: {1: 10}}  # what the objects held before

    # and a second full run, whose objects are all current (many answered from their stamps), proves it again
    again = merged(fleet, rotation_run(fleet)["runId"])
    assert again.complete and again.rotation.statuses == {"current": 10, "no-tokens": 1}
    same_verdict(again, direct_census(fleet))


def test_with_opaque_archived_poison_and_another_key_the_run_and_the_census_agree(fleet: LocalStack) -> None:
    seed_corpus(fleet, get_runtime())
    add_the_hard_cases(fleet)
    fleet.kms.rotate(fleet.key_tag)

    answer = rotation_run(fleet)

    run = merged(fleet, answer["runId"])
    census = direct_census(fleet)
    assert census.judge().verdict == "NOT SAFE"  # the poison object's good token could not be rotated
    same_verdict(run, census)
    assert run.complete and run.archived == 1  # listed, not enqueued, counted as unreadable as a census does
    assert set(census.unknown) == {"opaque", "unreadable", "malformed"}
    assert any("poison.txt: malformed-token" in failure for failure in run.rotation.failures)


def test_a_run_with_a_partial_lost_is_never_safe(fleet: LocalStack) -> None:
    seed_corpus(fleet, get_runtime())
    fleet.kms.rotate(fleet.key_tag)
    answer = rotation_run(fleet)
    records = run_folder(fleet, answer["runId"])
    assert merged(fleet, answer["runId"], records).judge_lines()[0] == 0

    lost = next(name for name, _ in records if name.startswith("part-"))
    run = merged(fleet, answer["runId"], [(name, body) for name, body in records if name != lost])

    code, lines = run.judge_lines()
    assert not run.complete and run.missing == [lost] and code == 1
    assert lines[0].startswith("UNKNOWN: cannot prove it: the run is incomplete")
    assert direct_census(fleet).judge().verdict == "SAFE"  # though everything was in fact rotated


def test_census_from_reports_and_fleet_status_read_a_rotation_run(
    fleet: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from rewrap_cli.fleet import status

    seed_corpus(fleet, get_runtime())
    fleet.kms.rotate(fleet.key_tag)
    answer = rotation_run(fleet)
    folder = f"s3://{fleet.bucket}/{REPORTS}census/{answer['runId']}/"

    code = cli.main(["census", "--from-reports", folder, "--min-version", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"rotation run {answer['runId']}" in out and "rotation: no-tokens 1, rotated 10" in out
    assert f"SAFE: nothing under rotation run {answer['runId']} is older than v2" in out

    state = status(get_runtime().store, f"s3://{fleet.bucket}/{REPORTS}", answer["runId"])
    assert state.done and state.reported == 11 and "rotated 10" in state.line()


def test_an_incremental_run_says_what_it_covered_and_proves_nothing_about_the_rest(fleet: LocalStack) -> None:
    seed_corpus(fleet, get_runtime())
    fleet.kms.rotate(fleet.key_tag)
    reset_runtime()
    with environment({"REWRAP_SWEEP_CLOCK_SKEW_SECONDS": "0"}):
        rotation_run(fleet)
        next_second()
        rotation_run(fleet, incremental=True)  # takes what the first run wrote: everything, again
        next_second()
        (theirs,) = get_runtime().kms.encrypt(fleet.key_tag, [b"written since"])
        fleet.client("s3").put_object(Bucket=fleet.bucket, Key="c/since.txt", Body=theirs.encode())
        next_second()
        answer = rotation_run(fleet, incremental=True)

    assert (answer["scope"], answer["enqueued"], answer["unchanged"]) == ("incremental", 1, 11)
    run = merged(fleet, answer["runId"])
    code, lines = run.judge_lines()
    assert code == 1 and lines[0].startswith("UNKNOWN") and not run.complete
    assert "an incremental run: 11 listed objects, unchanged since the last listing, were not looked at" in "".join(
        lines
    )
    assert run.rotation.statuses == {"current": 1}
