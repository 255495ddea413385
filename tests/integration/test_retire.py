"""``rewrap retire`` on the embedded stack (moto + the NCP KMS emulator): from a rotated key to a disabled old
version and back, every refusal, the evidence it leaves, and each API generation's way."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import rewrap_cli.main as cli
from functions.rotate.app import lambda_handler as rotate_handler
from functions.sweep.app import lambda_handler as sweep_handler
from rewrap.app.runtime import build_retire_tools, get_runtime
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import KeyState
from rewrap.core.retire import RetireRequest, retire
from rewrap.core.retire_verdict import Verdict, census_verdict
from rewrap.errors import KmsRejectedError
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.payloads import drain_queue, s3_notification
from rewrap_local.stack import ACCESS_KEY, LocalStack, environment

REPORTS = "reports/"
CHANGES = {"update-version", "set-version", "rotate"}  # the emulator's actions that change a key


@pytest.fixture
def retiring(handler_env: LocalStack) -> Iterator[LocalStack]:
    """The stack's environment with the report prefix under which retire writes its evidence."""
    with environment({"REWRAP_REPORT_PREFIX": f"s3://{handler_env.bucket}/{REPORTS}"}):
        yield handler_env


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def seed(stack: LocalStack, count: int = 4) -> list[str]:
    """``count`` objects under data/ with one token each at the key's current version; their keys."""
    s3 = stack.client("s3")
    keys = []
    for i in range(count):
        key = f"data/{i}.env"
        s3.put_object(Bucket=stack.bucket, Key=key, Body=f"SECRET={stack.kms.encrypt(stack.key_tag, b'%d' % i)}\n")
        keys.append(key)
    return keys


def evidence(stack: LocalStack) -> list[dict[str, Any]]:
    """The JSON records under the key's evidence folder, oldest first."""
    s3 = stack.client("s3")
    prefix = f"{REPORTS}retire/{stack.key_tag}/"
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix).get("Contents", [])
    records = [
        json.loads(s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read())
        for item in listed
        if item["Key"].endswith(".json")
    ]
    return sorted(records, key=lambda r: r["time"])


def s3_text(stack: LocalStack, url: str) -> bytes:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bytes(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def fleet_rotate(stack: LocalStack, prefix: str = "data/") -> None:
    """The deployed way: the sweep lists and enqueues, the rotate function drains the queue."""
    sweep_handler({"targets": [f"{stack.bucket}/{prefix}"]}, LambdaContext(function_name="rewrap-sweep"))
    delivered = drain_queue(stack.client("sqs"), stack.queue_url, rotate_handler)
    assert delivered["failed"] == 0


def test_from_a_rotated_key_to_a_disabled_version_and_back(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = retiring
    target = f"s3://{stack.bucket}/data/"
    seed(stack)
    late_token = stack.kms.encrypt(stack.key_tag, b"written after the census")  # a v1 token kept aside
    assert stack.kms.rotate(stack.key_tag) == 2

    # the census says NOT SAFE: retire refuses, with its evidence
    code, out = run(capsys, "retire", target, "--version", "1", "--yes")
    assert code == 1, out
    assert f"refused: {target}: NOT SAFE: 4 tokens in 4 objects are older than v2" in out
    assert stack.kms.version_states(stack.key_tag) == {1: "ENABLED", 2: "ENABLED"}
    (refused,) = evidence(stack)
    assert (refused["action"], refused["outcome"]) == ("retire", "refused")
    (verdict,) = refused["verdicts"]
    assert verdict["verdict"] == "NOT SAFE" and verdict["countsPerVersion"][stack.key_tag]["v1"]["tokens"] == 4
    data = s3_text(stack, verdict["dataLocation"])
    assert hashlib.sha256(data).hexdigest() == verdict["data"]["sha256"]
    assert len(data.splitlines()) == 5  # one census record per object, then the verdict

    # the fleet rotates; the census is SAFE; retire disables v1
    fleet_rotate(stack)
    code, out = run(capsys, "retire", target, "--version", "1", "--yes")
    assert code == 0, out
    assert f"disabled v1 of key {stack.key_tag}" in out and "evidence: s3://" in out
    assert stack.kms.version_states(stack.key_tag) == {1: "DISABLED", 2: "ENABLED"}
    retired = evidence(stack)[-1]
    assert retired["outcome"] == "retired"
    assert retired["versions"] == [{"version": 1, "before": "enabled", "after": "disabled"}]
    assert retired["verdicts"][0]["verdict"] == "SAFE" and retired["verdicts"][0]["newestVersion"] == 2

    # an object written after the census with a v1 token: the rotate function answers with the fix, permanently
    stack.client("s3").put_object(Bucket=stack.bucket, Key="data/late.env", Body=f"LATE={late_token}\n".encode())
    capsys.readouterr()
    summary = rotate_handler(s3_notification(stack.bucket, ["data/late.env"]), LambdaContext())
    emitted = capsys.readouterr().out
    assert (summary["failed"], summary["permanent"], summary["retryable"]) == (1, 1, 0)
    assert '"ObjectsOnDisabledVersion"' in emitted  # the metric the template's alarm watches
    records = [json.loads(line) for line in s3_rotate_reports(stack)]
    late = next(r for r in records if r.get("key") == "data/late.env")
    assert late["reason"].startswith(f"version-disabled: re-enable v1 to rotate it (key {stack.key_tag[:12]}…")

    # the census lists it as the rescue list; retire status says undo
    code, out = run(capsys, "census", target, "--min-version", "2")
    assert code == 1 and "rescue list: 1 objects hold tokens on a disabled version" in out, out
    assert f"s3://{stack.bucket}/data/late.env: v1 (1 tokens)" in out
    code, out = run(capsys, "retire", "status")
    assert code == 1, out
    assert "v1: disabled" in out and "rewrap's version-disabled answers since: 1" in out
    assert f"s3://{stack.bucket}/data/late.env" in out
    assert "undo: 1 objects still hold v1 tokens" in out

    # --undo enables it again (recorded), and the object rotates
    code, out = run(capsys, "retire", "--undo", "--yes")
    assert code == 0 and "enabled v1" in out, out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"
    assert evidence(stack)[-1]["outcome"] == "re-enabled"
    again = rotate_handler(s3_notification(stack.bucket, ["data/late.env"]), LambdaContext())
    assert again["rotated"] == 1, again
    code, out = run(capsys, "retire", "status")
    assert code == 0 and "no retirement of key" in out


def s3_rotate_reports(stack: LocalStack) -> list[str]:
    s3 = stack.client("s3")
    lines: list[str] = []
    for item in s3.list_objects_v2(Bucket=stack.bucket, Prefix=REPORTS).get("Contents", []):
        if item["Key"].endswith(".jsonl"):
            lines += s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read().decode().splitlines()
    return lines


# --- refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prepare", "args", "said"),
    [
        (None, ("--version", "2"), "refused: v2 is the key's current version: the current version cannot be disabled"),
        (None, ("--version", "5"), "refused: v5 does not exist (the current version is v2)"),
        ("DISABLED", ("--version", "1"), "refused: the key is disabled (state DISABLED)"),
        ("REVOKED", ("--below", "2"), "refused: the key is pending deletion (state REVOKED)"),
    ],
)
def test_refusals_before_the_census_change_and_write_nothing(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str], prepare: str | None, args: tuple[str, ...], said: str
) -> None:
    stack = retiring
    seed(stack, 1)
    stack.kms.rotate(stack.key_tag)
    if prepare:
        stack.kms.set_key_state(stack.key_tag, prepare)
    stack.kms.stats.reset()
    code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", *args, "--yes")
    assert code == 1 and said in out, out
    assert not CHANGES & set(stack.kms.stats.requests)
    assert stack.kms.version_states(stack.key_tag) == {1: "ENABLED", 2: "ENABLED"}
    assert evidence(stack) == []


def test_a_stale_verdict_is_refused_with_evidence(retiring: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 2)  # at v2 already: SAFE for v1
    code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1", "--max-age", "0s", "--yes")
    assert code == 1 and "is stale: its data was read" in out and "more than --max-age 0 s" in out, out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"
    assert evidence(stack)[-1]["outcome"] == "refused"


def census_run(stack: LocalStack, run_id: str) -> str:
    """A fleet census run over data/ (sweep in census mode, the queue drained); its folder."""
    sweep_handler({"mode": "census", "targets": [f"{stack.bucket}/data/"], "runId": run_id}, LambdaContext())
    drain_queue(stack.client("sqs"), stack.queue_url, rotate_handler)
    return f"s3://{stack.bucket}/{REPORTS}census/{run_id}/"


def test_a_census_run_retires_and_a_rotation_since_is_refused(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 3)  # every token at v2

    folder = census_run(stack, "run-before")
    stack.kms.rotate(stack.key_tag)  # v3: the key rotated after the census run
    code, out = run(capsys, "retire", "--from-reports", folder, "--version", "1", "--yes")
    assert code == 1, out
    assert "the key's newest version changed since the verdict" in out and "v2 then, v3 now" in out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"

    folder = census_run(stack, "run-after")
    code, out = run(capsys, "retire", "--from-reports", folder, "--below", "3", "--yes")
    assert code == 1 and "NOT SAFE" in out  # v2 tokens remain, and --below 3 names v2

    code, out = run(capsys, "retire", "--from-reports", folder, "--version", "1", "--yes")
    assert code == 0, out
    record = evidence(stack)[-1]
    (verdict,) = record["verdicts"]
    assert (record["outcome"], verdict["runId"], verdict["runComplete"]) == ("retired", "run-after", True)
    manifest = s3_text(stack, verdict["dataLocation"])
    assert hashlib.sha256(manifest).hexdigest() == verdict["data"]["sha256"]
    assert len(manifest.splitlines()) == 2  # one partial (3 objects in one message) and one listing record


def test_dry_run_makes_no_change_at_the_emulator(retiring: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 2)
    stack.kms.stats.reset()
    code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--below", "2", "--dry-run")
    assert code == 0 and "dry run: would disable v1" in out, out
    assert stack.kms.stats.requests and not CHANGES & set(stack.kms.stats.requests), stack.kms.stats.requests
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"
    assert evidence(stack) == []


def test_without_confirmation_nothing_changes(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 1)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1")
    assert code == 1 and "[y/N]" in out and "not confirmed: nothing was changed" in out, out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"
    assert evidence(stack)[-1]["outcome"] == "declined"


# --- API generations and credentials --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "change", "said"),
    [
        ("v3", "update-version", "KMS v3 on http://"),
        ("2.0", "set-version", "KMS 2.0 on http://"),
        ("1.0", "update-version", "(NCP_KMS_API=1.0 has no key management; the same access key manages it)"),
    ],
)
def test_each_generation_manages_where_ncp_documents_it(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str], api: str, change: str, said: str
) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 2)
    stack.kms.stats.reset()
    with environment({"NCP_KMS_API": api}):
        code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1", "--yes")
    assert code == 0 and said in out, out
    assert CHANGES & set(stack.kms.stats.requests) == {change}
    assert stack.kms.version_states(stack.key_tag)[1] == "DISABLED"


def test_token_only_credentials_print_the_console_steps(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    token = stack.kms.issue_token(stack.key_tag)
    secret = stack.client("secretsmanager").create_secret(
        Name=f"token-only-{stack.bucket}", SecretString=json.dumps({"ocapiToken": token})
    )["ARN"]
    with environment({"NCP_KMS_SECRET_ID": secret, "NCP_KMS_API": "v3"}):
        code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1", "--yes")
    assert code == 1, out
    assert "rewrap cannot manage this key's versions: the NCP secret holds only ocapi tokens" in out
    assert "Select v1 and choose Disable" in out and f"the key whose tag is {stack.key_tag}" in out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"


def test_a_permission_refusal_prints_the_console_steps_with_evidence(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    seed(stack, 1)
    stack.kms.allow_management(ACCESS_KEY, False)
    try:
        code, out = run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1", "--yes")
    finally:
        stack.kms.allow_management(ACCESS_KEY, True)
    assert code == 1 and "NCP refused the management call for this access key's permissions" in out, out
    assert "do it in the NCP console:" in out
    assert stack.kms.version_states(stack.key_tag)[1] == "ENABLED"
    record = evidence(stack)[-1]
    assert record["outcome"] == "console" and record["consoleSteps"] and record["verdicts"][0]["verdict"] == "SAFE"


def test_a_refusal_midway_puts_back_what_was_changed(retiring: LocalStack) -> None:
    """v1 is disabled, then NCP refuses v2: v1 is enabled again, and the evidence says so."""
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    stack.kms.rotate(stack.key_tag)
    seed(stack, 2)  # at v3
    settings = Settings.from_env()
    tools = build_retire_tools(settings, session=stack.session, endpoint_url=stack.moto_url)
    patches: list[int] = []

    def deny_the_second_change(response: Any) -> None:
        if response.request.method == "PATCH":
            patches.append(response.status_code)
            stack.kms.allow_management(ACCESS_KEY, len(patches) not in (1, 2))  # v2 refused, its retry too

    tools.keys.http.event_hooks["response"] = [deny_the_second_change]

    def verdicts(state: KeyState, versions: set[int]) -> list[Verdict]:
        target = SweepTarget(stack.bucket, "data/")
        return [census_verdict(tools.store, settings, target, state.key_tag, versions, state.current_version)]

    request = RetireRequest(stack.key_tag, below=3, max_age=timedelta(hours=1))
    try:
        outcome = retire(request, tools, verdicts, lambda _question: True)
    finally:
        stack.kms.allow_management(ACCESS_KEY, True)
        tools.close()
    assert patches == [200, 401, 401, 200]  # v1 disabled; v2 refused (asked twice: credentials re-read); v1 back
    assert outcome.exit_code == 2 and outcome.evidence is not None
    assert stack.kms.version_states(stack.key_tag) == {1: "ENABLED", 2: "ENABLED", 3: "ENABLED"}
    assert outcome.evidence.outcome == "failed"
    assert outcome.evidence.reasons[0].startswith("v2 could not be changed: key-management-unavailable")
    assert outcome.evidence.reasons[1] == "v1 was put back as it was"


def test_the_2_0_reading_that_refuses_an_unchanged_version_is_survived(retiring: LocalStack) -> None:
    stack = retiring
    stack.kms.rotate(stack.key_tag)
    stack.kms.refuse_unchanged_version_2_0 = True
    with environment({"NCP_KMS_API": "2.0"}):
        tools = build_retire_tools(Settings.from_env(), session=stack.session, endpoint_url=stack.moto_url)
    try:
        tools.keys.set_version(stack.key_tag, 1, enable=False)
        stack.kms.stats.reset()
        again = tools.keys.set_version(stack.key_tag, 1, enable=False)  # NCP answers 400; the state is as asked
    finally:
        tools.close()
    assert (again.version, again.enabled) == (1, False)
    assert stack.kms.stats.statuses[400] == 1 and stack.kms.version_states(stack.key_tag)[1] == "DISABLED"


def test_status_keeps_while_nothing_needs_the_version_and_says_undo_on_ncp_refusals(
    retiring: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = retiring
    old_token = stack.kms.encrypt(stack.key_tag, b"held by some other consumer")
    stack.kms.rotate(stack.key_tag)
    seed(stack, 1)
    assert run(capsys, "retire", f"s3://{stack.bucket}/data/", "--version", "1", "--yes")[0] == 0
    record = evidence(stack)[-1]
    assert record["who"]["awsCaller"].startswith("arn:aws:") and record["who"]["ncpAccessKey"] == ACCESS_KEY[:4] + "…"
    assert any("NKS" in item and "Secret Manager" in item for item in record["notCovered"])
    page = s3_text(stack, record["verdicts"][0]["dataLocation"].replace("-retired-1-census.jsonl", "-retired.md"))
    assert b"## What this evidence does not cover" in page and b"| v1 | enabled | disabled |" in page

    code, out = run(capsys, "retire", "status", "--watch", "7d")
    assert code == 0 and "keep: no sign that anything needed them" in out and "the watch goes on" in out, out

    # another consumer of the key (no S3 object rewrap could see) decrypts a v1 token: NCP refuses it
    with pytest.raises(KmsRejectedError):
        get_runtime().kms.decrypt(stack.key_tag, [old_token])
    code, out = run(capsys, "retire", "status")
    assert code == 1, out
    assert "NCP activity history: 1 decrypts/re-encrypts refused since the disable" in out
    assert "undo: NCP refused 1 decrypts/re-encrypts since the disable" in out
