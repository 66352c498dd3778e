"""Dependencies run one way: no import cycle between tunery's packages.

A node is a subpackage (`tunery/train/`) or a top-level module (`tunery/models.py`). Every import
counts, those inside functions too (a lazy import is still a dependency); only imports under
`if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tunery"


def node_of(module: str) -> str | None:
    """`tunery.train.plan` → "train"; `tunery.models` → "models"; None outside tunery."""
    parts = module.split(".")
    if parts[0] != "tunery" or len(parts) < 2:
        return None
    name = parts[1]
    return name if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file() else None


def import_graph() -> dict[str, dict[str, str]]:
    """node → {node it imports: one place that does, "file:line"}."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        source = node_of(".".join(relative.with_suffix("").parts))
        if source is None:  # tunery/__init__.py, tunery/__main__.py: the package's own face
            continue
        tree = ast.parse(path.read_text())
        type_only = {
            id(inner)
            for outer in ast.walk(tree)
            if isinstance(outer, ast.If) and "TYPE_CHECKING" in ast.unparse(outer.test)
            for inner in ast.walk(outer)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for module in modules:
                target = node_of(module)
                if target is not None and target != source:
                    graph[source].setdefault(target, f"{relative}:{node.lineno}")
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages():
    graph = import_graph()
    problems = [
        f"{' ↔ '.join(component)}: "
        + "; ".join(f"{a} → {b} at {graph[a][b]}" for a in component for b in component if b in graph.get(a, {}))
        for component in cycles(graph)
    ]
    assert not problems, "import cycles between packages:\n" + "\n".join(problems)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ""}, "b": {}}) == []


def test_plumbing_imports_nothing_from_tunery():
    graph = import_graph()
    assert not graph.get("fsio") and not graph.get("errors")
