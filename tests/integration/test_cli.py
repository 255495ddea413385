"""The ``rewrap`` command line against the embedded stack: output, report files and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import rewrap_cli.main as cli
from rewrap.core.reports import CENSUS_COLUMNS
from rewrap_cli.common import Progress
from rewrap_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seed(stack: LocalStack, count: int = 5) -> dict[str, bytes]:
    """Text objects with tokens at the key's current version, one envelope and one plain object."""
    s3 = stack.client("s3")
    bodies = {}
    for i in range(count):
        tokens = [stack.kms.encrypt(stack.key_tag, f"secret-{i}-{j}".encode()) for j in range(i + 1)]
        bodies[f"docs/{i}.env"] = "".join(f"K{j}={t}\n" for j, t in enumerate(tokens)).encode()
    bodies["docs/plain.txt"] = b"nothing secret\n"
    for key, body in bodies.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    wrapped = stack.kms.encrypt(stack.key_tag, b"data-key")
    s3.put_object(Bucket=stack.bucket, Key="docs/blob.bin", Body=b"\x00\x01", Metadata={"wrapped-key": wrapped})
    return bodies


def table_of(out: str) -> dict[str, list[str]]:
    """The summary table's rows: first cell -> the other cells."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_census_rotate_census_from_rotated_key_to_safe_to_disable(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = handler_env
    seed(stack)  # 15 tokens in 5 text objects + 1 envelope token, all at v1
    assert stack.kms.rotate(stack.key_tag) == 2
    target = f"s3://{stack.bucket}/docs/"

    # the census says v1 is still needed: exit 1, with the objects that need it
    code, out, _ = run(capsys, "census", target, "--min-version", "2", "--report", str(tmp_path / "before.csv"))
    assert code == 1
    assert f"census of {target}: 7 objects" in out
    assert "NOT SAFE: 16 tokens in 6 objects are older than v2" in out
    assert f"s3://{stack.bucket}/docs/4.env: v1: 5 tokens" in out
    rows = list(csv.DictReader((tmp_path / "before.csv").open()))
    *rows, verdict = rows  # the verdict is the report's last record
    assert verdict["kind"] == "verdict"
    assert verdict["reason"].startswith("NOT SAFE: 16 tokens in 6 objects are older than v2 (key ")
    assert [r["key"] for r in rows] == sorted(r["key"] for r in rows)  # listing order
    by_key = {r["key"]: r for r in rows}
    assert by_key["docs/4.env"]["versions"] == "v1=5"
    assert (by_key["docs/blob.bin"]["kind"], by_key["docs/blob.bin"]["tokens"]) == ("envelope", "1")
    assert (by_key["docs/plain.txt"]["kind"], by_key["docs/plain.txt"]["tokens"]) == ("no-tokens", "0")
    assert tuple(rows[0]) == CENSUS_COLUMNS

    # rotate: every object with tokens is rotated, exit 0, a JSON line per object
    code, out, err = run(capsys, "rotate", target, "--report", str(tmp_path / "rotate.jsonl"))
    assert code == 0, err
    assert f"rotating {target} to key {stack.key_tag} v2" in err
    assert f"rotate {target}: 7 objects" in out
    table = table_of(out)
    assert table["rotated"] == ["6", "16"]
    assert table["no-tokens"] == ["1", "0"]
    assert table["failed"] == ["0", "0"]
    assert "objects per key version: before v1: 6 → after v2: 6" in out
    records = {r["key"]: r for r in lines(tmp_path / "rotate.jsonl")}
    assert len(records) == 7
    assert records["docs/2.env"] | {"bucket": "-"} == {
        "bucket": "-",
        "key": "docs/2.env",
        "versionId": None,
        "status": "rotated",
        "tokens": 3,
        "rotatedTokens": 3,
        "fromVersions": [1],
        "toVersion": 2,
    }
    assert records["docs/plain.txt"]["status"] == "no-tokens"

    # the census now says v1 can go
    code, out, _ = run(capsys, "census", target, "--min-version", "2", "--report", str(tmp_path / "after.jsonl"))
    assert code == 0
    assert out.rstrip().splitlines()[-1].startswith(f"  SAFE: nothing under {target} is older than v2 (key ")
    assert out.rstrip().endswith("(bucket not versioned)")
    *records, verdict = lines(tmp_path / "after.jsonl")
    assert all(set(r["versions"]) <= {"v2"} for r in records)
    assert (verdict["verdict"], verdict["exitCode"]) == ("SAFE", 0)
    assert stack.key_tag in out and " v2 " in out


def test_dry_run_writes_nothing_and_reports_what_would_change(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = handler_env
    bodies = seed(stack, count=2)
    stack.kms.rotate(stack.key_tag)
    report = tmp_path / "plan.csv"
    code, out, err = run(capsys, "rotate", f"s3://{stack.bucket}/docs", "--dry-run", "--report", str(report))
    assert code == 0, err
    assert "dry run: nothing is written" in err
    assert "after (would be) v2: 3" in out
    rows = list(csv.DictReader(report.open()))
    assert {r["key"]: r["status"] for r in rows} == {
        "docs/0.env": "would-rotate",
        "docs/1.env": "would-rotate",
        "docs/blob.bin": "would-rotate",
        "docs/plain.txt": "no-tokens",
    }
    assert next(r for r in rows if r["key"] == "docs/1.env")["fromVersions"] == "1"
    s3 = stack.client("s3")
    for key, body in bodies.items():
        assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == body


def test_some_objects_failed_exit_1_every_object_failed_exit_2(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = handler_env
    seed(stack, count=1)
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="docs/broken.txt", Body=b"x=ncpkms:v1:abc\n")
    s3.put_object(Bucket=stack.bucket, Key="bad/only.txt", Body=b"x=ncpkms:v1:abc\n")
    stack.kms.rotate(stack.key_tag)

    code, out, _ = run(
        capsys, "rotate", f"s3://{stack.bucket}/docs/", "--format", "csv", "--report", str(tmp_path / "r")
    )
    assert code == 1
    table = table_of(out)
    assert (table["rotated"], table["failed"], table["permanent"]) == (["2", "2"], ["1", "0"], ["1"])
    failed = [r for r in csv.DictReader((tmp_path / "r").open()) if r["status"] == "failed"]
    assert [(r["key"], r["errorClass"]) for r in failed] == [("docs/broken.txt", "permanent")]
    assert failed[0]["reason"].startswith("malformed-token: 1 malformed ncpkms token(s); first at byte 2")

    code, out, _ = run(capsys, "rotate", f"s3://{stack.bucket}/bad/")
    assert code == 2
    assert table_of(out)["failed"] == ["1", "0"]

    # a malformed token might be an old one: the census cannot prove docs/ safe (exit 1, UNKNOWN)
    code, out, _ = run(capsys, "census", f"s3://{stack.bucket}/docs/", "--min-version", "2")
    assert code == 1
    assert "UNKNOWN: cannot prove it: nothing older than v2" in out
    assert "  malformed: 1 objects" in out and f"s3://{stack.bucket}/docs/broken.txt: 1 malformed" in out


def test_noncurrent_versions_are_counted_only_with_versions(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = handler_env
    s3 = stack.client("s3")
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    seed(stack, count=2)
    stack.kms.rotate(stack.key_tag)
    target = f"s3://{stack.bucket}/docs/"
    assert run(capsys, "rotate", target)[0] == 0

    # a versioned bucket without --versions: the noncurrent versions were not looked at
    code, out, _ = run(capsys, "census", target, "--min-version", "2")
    assert code == 1
    assert "UNKNOWN: cannot prove it" in out
    assert "noncurrent not scanned: bucket versioning is Enabled" in out

    code, out, _ = run(
        capsys, "census", target, "--min-version", "2", "--versions", "--report", str(tmp_path / "v.jsonl")
    )
    assert code == 1
    assert "(current and noncurrent versions)" in out
    assert "NOT SAFE: 4 tokens in 3 objects are older than v2" in out  # the versions the rotation replaced
    assert "  v1: 4 tokens in 3 objects (3 noncurrent)" in out
    assert "3 objects with older tokens are noncurrent versions, which cannot be rotated" in out
    old = [r for r in lines(tmp_path / "v.jsonl") if r.get("noncurrent")]
    assert sorted((r["key"], r["versions"]) for r in old) == [
        ("docs/0.env", {"v1": 1}),
        ("docs/1.env", {"v1": 2}),
        ("docs/blob.bin", {"v1": 1}),
    ]
    assert all(r["versionId"] for r in old)
    assert "(noncurrent)" in out


@pytest.mark.parametrize(
    ("unset", "args", "message"),
    [
        ("NCP_KMS_KEY_TAG", ["rotate"], "NCP_KMS_KEY_TAG is not set: pass --key-tag or set the variable"),
        ("NCP_KMS_SECRET_ID", ["rotate"], "NCP_KMS_SECRET_ID is not set: set it to the Secrets Manager secret"),
        (None, ["rotate", "--rate", "-1"], "--rate must be 0 (unlimited) or more requests per second"),
    ],
)
def test_configuration_errors_are_one_line_and_exit_2(
    handler_env: LocalStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unset: str | None,
    args: list[str],
    message: str,
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    code, out, err = run(capsys, args[0], f"s3://{handler_env.bucket}/", *args[1:])
    assert code == 2
    assert err.startswith("rewrap: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not out


def test_a_refused_or_missing_bucket_exits_2_and_verbose_shows_the_trace(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "rotate", "s3://not-allowed-bucket/")
    assert code == 2
    assert "bucket 'not-allowed-bucket' is not in REWRAP_BUCKETS: add it there or unset the variable" in err

    monkeypatch.setenv("REWRAP_BUCKETS", "")
    code, _, err = run(capsys, "census", "s3://no-such-bucket-here/", "--min-version", "1")
    assert code == 2
    assert err.strip() == "rewrap: S3 LIST failed (NoSuchBucket): check the bucket name and its region (AWS_REGION)"
    code, _, err = run(capsys, "rotate", "s3://no-such-bucket-here/x", "--verbose")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "NoSuchBucket" in err


def test_an_unreachable_kms_is_nothing_done(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NCP_KMS_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("NCP_KMS_MAX_ATTEMPTS", "1")
    code, _, err = run(capsys, "rotate", f"s3://{handler_env.bucket}/")
    assert code == 2
    assert "check NCP_KMS_ENDPOINT and the network" in err


def test_progress_is_one_updating_line_on_a_terminal_and_plain_lines_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, plain = Terminal(), io.StringIO()
    for stream in (terminal, plain):
        progress = Progress(stream, interval=0)
        for done in (10, 20):
            progress.update(done, lambda: "rotated 5")
        progress.finish()
    assert terminal.getvalue().count("\r") >= 3 and "\n" not in terminal.getvalue()
    assert "20 objects" in terminal.getvalue() and "rotated 5" in terminal.getvalue()
    assert [line.split(" objects")[0] for line in plain.getvalue().splitlines()] == ["10", "20"]
    quiet = io.StringIO()
    Progress(quiet, enabled=False, interval=0).update(1, lambda: "x")
    assert quiet.getvalue() == ""


def test_emulator_and_demo_are_delegated(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["emulator", "--help"])
    assert exited.value.code == 0
    assert "--create-key" in capsys.readouterr().out
    import rewrap_local.demo

    monkeypatch.setattr(rewrap_local.demo, "main", lambda: 7)
    assert cli.main(["demo"]) == 7


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["census", "bucket/prefix"], ["rotate", "s3://b/", "--concurrency", "0"], []):
        with pytest.raises(SystemExit) as exited:
            cli.main(args)
        assert exited.value.code == 2
    assert "is not an s3://bucket/prefix URL" in capsys.readouterr().err


def test_installed_script_and_module_run_against_the_stack(handler_env: LocalStack, tmp_path: Path) -> None:
    stack = handler_env
    seed(stack, count=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/rewrap", "local", "cli"))}
    script = Path(sys.executable).parent / "rewrap"
    assert script.exists(), "run: .venv/bin/pip install -e '.[dev]'"
    report = tmp_path / "census.jsonl"
    for command in ([str(script)], [sys.executable, "-m", "rewrap_cli"]):
        done = subprocess.run(  # noqa: S603 - our own entry points
            [*command, "census", f"s3://{stack.bucket}/docs/", "--min-version", "1", "--report", str(report)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "SAFE: nothing under" in done.stdout
        assert len(report.read_text().splitlines()) == 3 + 1  # three objects, then the verdict


def test_rotate_local_starts_the_embedded_stack(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rewrap_cli", "rotate", "s3://local-check/", "--local"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "starting the embedded stack" in done.stderr
    assert "rotate s3://local-check/: 0 objects" in done.stdout


def test_a_census_without_min_version_judges_against_the_newest_version_ncp_tells(
    handler_env: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No silent "no verdict": a script checking the exit code sees NOT SAFE while v1 tokens remain, SAFE once
    they are gone, and UNKNOWN (never 0) when NCP cannot be asked."""
    stack = handler_env
    seed(stack, count=2)
    assert stack.kms.rotate(stack.key_tag) == 2
    target = f"s3://{stack.bucket}/docs/"

    code, out, err = run(capsys, "census", target)
    assert code == 1
    assert "judging against v2, key" in err and "NOT SAFE" in out

    assert run(capsys, "rotate", target)[0] == 0
    code, out, _ = run(capsys, "census", target)
    assert code == 0 and "SAFE: nothing under" in out and "older than v2" in out

    # A census writes nothing: asking NCP does not need the bucket in REWRAP_BUCKETS, as rotating does
    monkeypatch.setenv("REWRAP_BUCKETS", "someone-elses-bucket")
    assert run(capsys, "census", target)[0] == 0

    monkeypatch.setenv("NCP_KMS_MAX_ATTEMPTS", "1")
    stack.kms.inject("server-error", times=5, action=None, status=503)
    code, out, _ = run(capsys, "census", target)
    assert code == 1
    assert f"UNKNOWN: NCP did not tell key {stack.key_tag}'s newest version (kms-unavailable: " in out
    stack.kms.clear_faults()

    monkeypatch.delenv("NCP_KMS_SECRET_ID")
    code, out, _ = run(capsys, "census", target)
    assert code == 1
    assert "UNKNOWN: the key's newest version cannot be asked of NCP" in out and "--min-version N" in out
    assert run(capsys, "census", target, "--min-version", "2")[0] == 0  # an explicit version needs no NCP
