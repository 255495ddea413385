"""The one-way rule of docs/architecture.md, read from the imports of the package itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "rewrap" / "rewrap"
CORE = ["engine", "service", "sweep", "census", "reports", "tokens", "forms", "events", "ports", "config", "errors"]
ADAPTERS = {"rewrap.objects", "rewrap.queues", "rewrap.ncp.client", "rewrap.secrets", "rewrap.runtime"}
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


def test_only_the_handlers_reach_the_composition_root() -> None:
    users = {p.stem for p in PACKAGE.rglob("*.py") if "rewrap.runtime" in imports(p)}
    assert users == {"handlers"}


def test_the_package_imports_nothing_it_does_not_ship() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert not [m for m in imports(path) if m.split(".")[0] in NEVER_SHIPPED], path
