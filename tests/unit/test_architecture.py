"""The one-way rule of docs/architecture.md, read from the imports of the package itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "rewrap" / "rewrap"
# The engine is engine.py with its parts: results, metadata, work, rewrapping, runner, streamed.
ENGINE = ["engine", "results", "records", "metadata", "work", "rewrapping", "runner", "streamed"]
CORE = [
    *ENGINE,
    *(
        "service",
        "sweep",
        "census",
        "census_taker",
        "census_runs",
        "reports",
        "tokens",
        "token_segments",
        "forms",
        "events",
        "ports",
        "config",
        "errors",
    ),
]
# The S3 adapter is objects.py with its tables: s3_attributes, s3_errors.
ADAPTERS = {
    "rewrap.objects",
    "rewrap.s3_attributes",
    "rewrap.s3_errors",
    "rewrap.queues",
    "rewrap.ncp.client",
    "rewrap.ncp.transport",
    "rewrap.ncp.batching",
    "rewrap.ncp.replies",
    "rewrap.secrets",
    "rewrap.runtime",
}
# What both sides may use: time, logging and metrics, NCP's data and signing.
SHARED = {
    "rewrap",
    "rewrap.deadline",
    "rewrap.observability",
    "rewrap.ncp",
    "rewrap.ncp.generations",
    "rewrap.ncp.regions",
    "rewrap.ncp.reply_errors",
    "rewrap.ncp.assumptions",
    "rewrap.ncp.signing",
}
ENTRY_POINTS = {"rewrap.handlers"}
SDKS = ("boto3", "botocore", "httpx", "mypy_boto3_s3")
NEVER_SHIPPED = ("rewrap_local", "rewrap_cli", "moto", "pytest", "functions")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_depends_on_ports_not_on_adapters(module: str) -> None:
    assert imports(PACKAGE / f"{module}.py") & ADAPTERS == set()


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_sdk(module: str) -> None:
    assert not [m for m in imports(PACKAGE / f"{module}.py") if m.split(".")[0] in SDKS]


def test_every_module_of_the_package_is_core_adapter_or_shared() -> None:
    """A new module says which side it is on, so the rules above cover it."""
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
    }
    classified = [{f"rewrap.{m}" for m in CORE}, ADAPTERS, SHARED, ENTRY_POINTS]
    assert modules == set().union(*classified)
    assert sum(len(c) for c in classified) == len(modules)  # and on one side only


def test_only_the_handlers_reach_the_composition_root() -> None:
    users = {p.stem for p in PACKAGE.rglob("*.py") if "rewrap.runtime" in imports(p)}
    assert users == {"handlers"}


def test_the_package_imports_nothing_it_does_not_ship() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert not [m for m in imports(path) if m.split(".")[0] in NEVER_SHIPPED], path
