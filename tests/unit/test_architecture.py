"""The one-way rules of docs/architecture.md, read from the imports of the code itself: each folder of the
package may import only the folders below it, the CLI reaches the package through its composition root and
core, and no module anywhere in the tree takes part in an import cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every importable tree of the project, by its top-level package name.
TREES = {
    "rewrap": ROOT / "layers" / "rewrap" / "rewrap",
    "rewrap_cli": ROOT / "cli" / "rewrap_cli",
    "rewrap_local": ROOT / "local" / "rewrap_local",
}
PACKAGE = TREES["rewrap"]
# The folders of the package, lowest first, and what each may import from the package. Anything not named
# here is refused, so a new folder has to say where it stands.
SHARED = {"rewrap", "rewrap.errors", "rewrap.deadline", "rewrap.observability"}
ALLOWED: dict[str, set[str]] = {
    "shared": SHARED,
    "rewrap.ncp": SHARED | {"rewrap.ncp"},
    "rewrap.core": SHARED | {"rewrap.ncp", "rewrap.core"},
    "rewrap.adapters": SHARED | {"rewrap.ncp", "rewrap.core", "rewrap.adapters"},
    "rewrap.app": SHARED | {"rewrap.ncp", "rewrap.core", "rewrap.adapters", "rewrap.app"},
    # The CLI uses the package's use cases and its composition root; it builds no adapter itself.
    "rewrap_cli": SHARED | {"rewrap.ncp", "rewrap.core", "rewrap.app", "rewrap_cli"},
}
SDKS = ("boto3", "botocore", "httpx", "mypy_boto3_s3")
NEVER_SHIPPED = ("rewrap_local", "rewrap_cli", "moto", "pytest", "functions", "tests")


def module_name(path: Path) -> str:
    for top, folder in TREES.items():
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join((top, *parts)).removesuffix(".__init__")
    raise AssertionError(path)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (a lazy import is still a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules(tree: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(TREES[tree].rglob("*.py")):
        yield module_name(path), path


def folder_of(module: str) -> str:
    """The rule a module follows: its folder in the package, or the CLI."""
    if module in SHARED:
        return "shared"
    return next(f for f in ALLOWED if f != "shared" and (module == f or module.startswith(f + ".")))


def within(module: str, prefixes: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes - {"rewrap"}) or module == "rewrap"


def project_imports(path: Path) -> set[str]:
    return {m for m in imports(path) if m.split(".")[0] in TREES}


PACKAGE_AND_CLI = [*modules("rewrap"), *modules("rewrap_cli")]


@pytest.mark.parametrize(("module", "path"), PACKAGE_AND_CLI, ids=[m for m, _ in PACKAGE_AND_CLI])
def test_each_folder_imports_only_the_folders_below_it(module: str, path: Path) -> None:
    allowed = ALLOWED[folder_of(module)]
    outside = {m for m in project_imports(path) if m.split(".")[0] == "rewrap" and not within(m, allowed)}
    assert outside == set(), f"{module} ({folder_of(module)}) may not import {sorted(outside)}"


@pytest.mark.parametrize(("module", "path"), list(modules("rewrap")), ids=[m for m, _ in modules("rewrap")])
def test_the_package_imports_nothing_it_does_not_ship(module: str, path: Path) -> None:
    assert not [m for m in imports(path) if m.split(".")[0] in NEVER_SHIPPED]


def test_the_core_and_the_ncp_data_import_no_sdk() -> None:
    offenders = {
        module: sdk
        for module, path in modules("rewrap")
        if folder_of(module) in ("shared", "rewrap.ncp", "rewrap.core")
        for sdk in imports(path)
        if sdk.split(".")[0] in SDKS
    }
    assert offenders == {}


def test_only_the_handlers_and_the_cli_reach_the_composition_root() -> None:
    users = {
        module
        for tree in TREES
        for module, path in modules(tree)
        if "rewrap.app.runtime" in imports(path) and module != "rewrap.app.runtime"
    }
    assert {u for u in users if u.startswith("rewrap.")} == {"rewrap.app.handlers"}


def test_no_import_cycle_anywhere_in_the_tree() -> None:
    """Over the package, the CLI and the embedded stack together, counting lazy imports too."""
    graph: dict[str, set[str]] = {}
    for tree in TREES:
        for module, path in modules(tree):
            graph[module] = set()
            for imported in project_imports(path):
                # ``from a.b import c`` names a.b.c when c is a module, else a.b: take the longest known.
                graph[module].add(imported)
    known = set(graph)
    for module, targets in graph.items():
        graph[module] = {t for t in (_known(t, known) for t in targets) if t and t != module}
    assert _cycles(graph) == []


def _known(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_is_longer_than_400_lines() -> None:
    long = {
        module: lines
        for tree in TREES
        for module, path in modules(tree)
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
