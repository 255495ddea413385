"""The operator CLI as a user installs it: ``pip install .`` (not editable) into a fresh virtual
environment, run from outside the repository. Against real AWS and NCP it needs nothing else; the
embedded stack (``--local``, ``rewrap demo``) comes with the ``local`` extra."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewrap.app.runtime import Runtime
from rewrap_local.stack import LocalStack
from tests.permissions import ROOT

# Each test installs into a fresh environment (pip resolving from the index) and the second runs the demo:
# minutes on a busy machine, so past the suite's default 300 s per test.
pytestmark = pytest.mark.timeout(1200)

DEV_ONLY = ("moto", "pytest", "cryptography", "ruff", "cfn-lint", "mypy")


class Installed:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.bin = home / "bin"

    def pip(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - the fresh environment's own pip
            [str(self.bin / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
            check=True,
            capture_output=True,
            timeout=600,
        )

    def packages(self) -> set[str]:
        listed = subprocess.run(  # noqa: S603
            [str(self.bin / "python"), "-m", "pip", "list", "--format", "json"],
            check=True,
            capture_output=True,
            text=True,
        )
        return {p["name"].lower() for p in json.loads(listed.stdout)}

    def rewrap(self, *args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return subprocess.run(  # noqa: S603 - the installed entry point
            [str(self.bin / "rewrap"), *args],
            env={**clean, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    home = tmp_path_factory.mktemp("installed") / "venv"
    venv.EnvBuilder(with_pip=True).create(home)
    environment = Installed(home)
    environment.pip(str(ROOT))  # a regular, non-editable install
    yield environment


def test_installed_cli_needs_no_dev_package_for_aws_and_ncp(
    installed: Installed, stack: LocalStack, runtime: Runtime, tmp_path: Path
) -> None:
    assert installed.packages().isdisjoint(DEV_ONLY)
    (token,) = runtime.kms.encrypt(stack.key_tag, [b"installed"])
    stack.client("s3").put_object(Bucket=stack.bucket, Key="docs/a.json", Body=json.dumps({"t": token}).encode())
    stack.kms.rotate(stack.key_tag)

    assert installed.rewrap("--help", cwd=tmp_path).returncode == 0
    at_v1 = installed.rewrap(
        "census", f"s3://{stack.bucket}/", "--min-version", "1", env=stack.environment(), cwd=tmp_path
    )
    at_v2 = installed.rewrap(
        "census", f"s3://{stack.bucket}/", "--min-version", "2", env=stack.environment(), cwd=tmp_path
    )

    assert at_v1.returncode == 0, at_v1.stdout + at_v1.stderr
    assert at_v2.returncode == 1, at_v2.stdout + at_v2.stderr  # the object is still on v1


def test_embedded_stack_says_which_extra_it_needs_then_runs_the_demo_anywhere(
    installed: Installed, tmp_path: Path
) -> None:
    missing = installed.rewrap("demo", cwd=tmp_path)
    assert missing.returncode == 2
    assert "pip install 'rewrap[local]'" in missing.stderr

    installed.pip(f"{ROOT}[local]")
    demo = installed.rewrap("demo", cwd=tmp_path)

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert ": OK" in demo.stdout
