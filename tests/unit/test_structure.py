"""The package rules of docs/architecture.md, checked on the source with ``ast``.

Every ``import`` counts, also one inside a function: a lazy import hides a cycle from the
interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "models", "schemas", "flows", "experiments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """First-party modules that ``name`` imports anywhere in its source."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _third_party(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_sees_the_packages() -> None:
    """The checks below are only as good as the import walk: it must see known edges."""
    assert "pipeline.hsi.curate" in MODULES and "models.emin" in MODULES
    assert "pipeline.errors" in GRAPH["pipeline.hsi.curate"]
    assert "schemas.hsi" in GRAPH["pipeline.hsi.curate"]


def test_no_import_cycles() -> None:
    """Depth-first search over every module's imports; any back edge is a cycle."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _violations(prefix: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name, targets in GRAPH.items():
        if name.split(".")[0] != prefix:
            continue
        for t in sorted(targets):
            top = t.split(".")[0]
            if top == prefix:
                continue
            if top in forbidden or (allowed and not any(t == a or t.startswith(a + ".") for a in allowed)):
                bad.append(f"{name} imports {t}")
    return bad


def test_schemas_import_only_pipeline_errors() -> None:
    assert _violations("schemas", allowed=("pipeline.errors",), forbidden=()) == []


def test_models_import_nothing_from_pipeline_but_errors_and_codes_and_nothing_from_flows() -> None:
    allowed = ("pipeline.errors", "pipeline.publishing.codes", "schemas")
    bad = _violations("models", allowed=allowed, forbidden=("flows",))
    assert bad == []


def test_the_store_codes_module_stays_a_light_leaf() -> None:
    """models/ decodes store columns with pipeline.publishing.codes: numpy and the errors only."""
    assert GRAPH["pipeline.publishing.codes"] <= {"pipeline", "pipeline.errors", "pipeline.publishing"}
    stdlib = {"__future__", "re", "collections", "typing"}
    heavy = _third_party(MODULES["pipeline.publishing.codes"]) - stdlib - {"pipeline"}
    assert heavy <= {"numpy", "xarray"}  # xarray: type hints only (under TYPE_CHECKING)


def test_pipeline_imports_nothing_from_flows() -> None:
    assert _violations("pipeline", allowed=(), forbidden=("flows",)) == []


def test_experiments_import_nothing_from_flows() -> None:
    """The experiment suite is library code too: the flow wraps it, not the other way round."""
    assert _violations("experiments", allowed=(), forbidden=("flows",)) == []


@pytest.mark.parametrize("package", ["pipeline", "models", "schemas", "experiments"])
def test_library_packages_never_import_prefect(package: str) -> None:
    users = [n for n, p in MODULES.items() if n.split(".")[0] == package and "prefect" in _third_party(p)]
    assert users == []


def test_schemas_are_pydantic_only() -> None:
    """schemas/ holds models, not computation: no numpy, xarray, zarr or torch."""
    heavy = {"numpy", "xarray", "zarr", "torch", "pandas", "rasterio", "obspy"}
    users = {n: sorted(_third_party(p) & heavy) for n, p in MODULES.items() if n.startswith("schemas")}
    assert {n: u for n, u in users.items() if u} == {}
