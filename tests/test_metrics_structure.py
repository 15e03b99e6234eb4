"""The metrics package's import graph (lazy imports inside functions included) has no circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "observability_app" / "metrics"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    modules = {_module(path) for path in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
                found |= {candidate for candidate in candidates if candidate in modules and candidate != name}
        # a package's __init__ is not an edge back from its own modules (Python imports it first anyway)
        graph[name] = {target for target in found if not name.startswith(target + ".")}
    return graph


def test_no_import_circle_in_the_metrics_package():
    graph = imports()
    assert "observability_app.metrics.families" in graph and "observability_app.metrics.bucket.catalog" in graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_families_does_not_import_http():
    assert "observability_app.metrics.http" not in imports()["observability_app.metrics.families"]
