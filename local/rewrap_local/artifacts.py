"""The built Lambda artifacts (``make package`` → ``.aws-sam/build``), run the way Lambda runs them.

A clean interpreter (``python3.12 -I -S -B``: no site-packages, no environment paths, no bytecode
written) holds only the built function directory (Lambda's ``/var/task``) and the layer's
``python/`` directory (``/opt/python``) ahead of the standard library. Whatever the functions import
must come from there; the dev ``.venv`` is invisible. Used by the artifact tests and ``make bench``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".aws-sam" / "build"
FUNCTIONS = {"rotate": "RotateFunction", "sweep": "SweepFunction"}
LAYER = "RewrapLayer"

# What a Lambda container sets before the handler module is imported (the tracer looks at these).
LAMBDA_ENVIRONMENT = {
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
}

# Runs inside the clean interpreter: import the handler, call it once per event, report what was loaded.
_RUNNER = r"""
import json, sys, time
function_dir, layer_dir, request = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
sys.path[:0] = [function_dir, layer_dir]
began = time.perf_counter()
import app
import_seconds = time.perf_counter() - began

class Context:
    function_name = request["function_name"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:" + function_name
    memory_limit_in_mb = 1024
    aws_request_id = "artifact-test"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "artifact-test"
    def get_remaining_time_in_millis(self):
        return 290_000

# Record every AWS call the function makes (service, operation), to compare with its IAM role.
import botocore.client
from botocore import xform_name
calls, make_api_call = set(), botocore.client.BaseClient._make_api_call
def recording(self, operation_name, api_params):
    calls.add((self.meta.service_model.service_name, xform_name(operation_name)))
    return make_api_call(self, operation_name, api_params)
botocore.client.BaseClient._make_api_call = recording

results = [app.lambda_handler(event, Context()) for event in request["events"]]
modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
reply = {"import_seconds": import_seconds, "results": results, "modules": modules, "calls": sorted(calls)}
print(json.dumps(reply))
"""


class ArtifactMissing(RuntimeError):
    """``.aws-sam/build`` lacks a function or the layer: run ``make package`` first."""


@dataclass(frozen=True)
class BuiltFunction:
    name: str
    function_dir: Path
    layer_dir: Path

    @classmethod
    def find(cls, name: str, build_dir: Path = BUILD_DIR) -> BuiltFunction:
        function_dir, layer_dir = build_dir / FUNCTIONS[name], build_dir / LAYER / "python"
        for path in (function_dir / "app.py", layer_dir / "rewrap"):
            if not path.exists():
                raise ArtifactMissing(f"{path} not found: run `make package` (sam build) first")
        return cls(name, function_dir, layer_dir)

    def without_bytecode(self, scratch: Path) -> BuiltFunction:
        """A copy with every ``__pycache__`` removed: what a layer without compiled bytecode costs."""
        ignore = shutil.ignore_patterns("__pycache__")
        function_dir, layer_dir = scratch / "task", scratch / "opt" / "python"
        shutil.copytree(self.function_dir, function_dir, ignore=ignore, dirs_exist_ok=True)
        shutil.copytree(self.layer_dir, layer_dir, ignore=ignore, dirs_exist_ok=True)
        return BuiltFunction(self.name, function_dir, layer_dir)

    def invoke(self, events: Sequence[Mapping[str, Any]], environment: Mapping[str, str]) -> Invocation:
        """Import the handler in a clean interpreter and call it with each event, in one container."""
        function_name = f"rewrap-{self.name}"
        request = {"function_name": function_name, "events": list(events)}
        done = subprocess.run(  # noqa: S603 (our own interpreter and script)
            [runtime_python(), "-I", "-S", "-B", "-c", _RUNNER, str(self.function_dir), str(self.layer_dir)],
            input=json.dumps(request),
            env=clean_environment({"AWS_LAMBDA_FUNCTION_NAME": function_name, **environment}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"built {self.name} function failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        calls = [(service, operation) for service, operation in reply["calls"]]
        return Invocation(reply["results"], reply["modules"], calls, reply["import_seconds"], done.stderr)

    def foreign_modules(self, modules: Mapping[str, str | None]) -> dict[str, str]:
        """Loaded modules that came from neither the artifacts nor the interpreter's standard library."""
        shipped, stdlib = (str(self.function_dir), str(self.layer_dir)), stdlib_dir()
        foreign = {}
        for name, path in modules.items():
            real = os.path.realpath(path) if path else ""
            from_stdlib = real.startswith(stdlib) and not real.startswith(str(Path(stdlib) / "site-packages"))
            if path and not (real.startswith(shipped) or from_stdlib):
                foreign[name] = path
        return foreign


@dataclass(frozen=True)
class Invocation:
    results: list[Any]
    modules: dict[str, str | None]
    calls: list[tuple[str, str]]  # (service, operation) of every AWS call made
    import_seconds: float
    log: str


def runtime_python() -> str:
    """Python 3.12, as Lambda runs it: this interpreter when it is 3.12, else pyenv's or the PATH's."""
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    pyenv = sorted(Path("~/.pyenv/versions").expanduser().glob("3.12*/bin/python3.12"), reverse=True)
    found = [str(p) for p in pyenv] + [p for p in [shutil.which("python3.12")] if p and "/shims/" not in p]
    if not found:
        raise ArtifactMissing("Python 3.12 (the Lambda runtime) is not installed")
    return found[0]


def stdlib_dir() -> str:
    """The standard library (and its extension modules) of the runtime interpreter."""
    code = "import sysconfig; print(sysconfig.get_paths()['stdlib'])"
    out = subprocess.run([runtime_python(), "-I", "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    return os.path.realpath(out.stdout.strip())


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Only what Lambda would set plus the function's own variables: no PYTHON*, no dev paths."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # noqa: S108 (Lambda's writable directory)
    env.update(LAMBDA_ENVIRONMENT)
    env.update(extra)
    return env


def cold_imports(
    function: BuiltFunction, runs: int, environment: Mapping[str, str], scratch: Path
) -> dict[str, dict[str, float]]:
    """Median seconds of the imports a cold start pays, each in a fresh interpreter, with and without the
    layer's compiled bytecode. The baseline is a bare ``import boto3`` with bytecode, as the runtime image
    ships its SDK. ``app`` imports boto3 only when the first invocation builds the runtime, so
    ``app, boto3`` is the whole bill before the first request."""
    stripped = function.without_bytecode(scratch)
    env = clean_environment({"AWS_LAMBDA_FUNCTION_NAME": f"rewrap-{function.name}", **environment})
    untraced, traced = {**env, "POWERTOOLS_TRACE_DISABLED": "true"}, {**env, "POWERTOOLS_TRACE_DISABLED": "false"}
    cases = {
        "boto3_with_bytecode": (function, "boto3", untraced),
        "boto3_without_bytecode": (stripped, "boto3", untraced),
        "app_with_bytecode": (function, "app", untraced),
        "app_without_bytecode": (stripped, "app", untraced),
        "app_and_boto3_with_bytecode": (function, "app, boto3", untraced),
        "app_and_boto3_without_bytecode": (stripped, "app, boto3", untraced),
        "app_traced_with_bytecode": (function, "app, boto3", traced),
    }
    samples: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(runs):  # interleaved, so background noise hits every case alike
        for case, (built, modules, case_env) in cases.items():
            samples[case].append(_import_seconds(built, modules, case_env))
    return {case: {"median_s": statistics.median(values), "min_s": min(values)} for case, values in samples.items()}


def _import_seconds(function: BuiltFunction, modules: str, env: Mapping[str, str]) -> float:
    code = (
        "import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[2]]; t = time.perf_counter(); "
        f"import {modules}; print(time.perf_counter() - t)"
    )
    done = subprocess.run(  # noqa: S603 (our own interpreter)
        [runtime_python(), "-I", "-S", "-B", "-c", code, str(function.function_dir), str(function.layer_dir)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def zipped_bytes(path: Path, scratch: Path) -> int:
    """Size of the directory as SAM uploads it (a zip archive)."""
    return Path(shutil.make_archive(str(scratch / path.name), "zip", root_dir=path)).stat().st_size
