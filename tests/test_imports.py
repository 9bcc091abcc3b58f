"""The import graph of yolohand.models (and yolohand.data): no circle, and layers that import only downwards.

Read from the sources with ast (every import, at module level or inside a function), so a
circle hidden behind a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yolohand

PACKAGE = Path(yolohand.__file__).parent
MODELS = "yolohand.models"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The yolohand.models modules ``path`` imports (``from pkg import mod`` resolved to the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph(package: str = "models") -> dict[str, set[str]]:
    """module -> the yolohand.<package> modules it imports (itself and its own package left out)."""
    paths = {_module_name(p): p for p in (PACKAGE / package).rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        edges = _imports(path, modules) - {name}
        graph[name] = {m for m in edges if not name.startswith(m + ".")}  # a package's own __init__
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as [a, b, ..., a], or [] when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_models_has_no_import_circle():
    graph = import_graph()
    assert f"{MODELS}.shared.checkpoint" in graph and f"{MODELS}.family" in graph
    assert find_cycle(graph) == []


def test_data_has_no_import_circle():
    # The phantom's parts (hand geometry, anatomy, projection, detector, annotation) import one
    # way: synth -> phantom -> projection/detector -> hand -> anatomy (issue 25).
    graph = import_graph("data")
    assert "yolohand.data.phantom" in graph and "yolohand.data.synth" in graph
    assert find_cycle(graph) == []
    assert "yolohand.data.synth" not in graph["yolohand.data.phantom"]


def _imported_by(prefix: str) -> set[str]:
    graph = import_graph()
    return set().union(*(edges for name, edges in graph.items() if name == prefix or name.startswith(prefix + ".")))


def test_refiner_takes_only_shared_pieces():
    bad = {m for m in _imported_by(f"{MODELS}.refine") if not m.startswith((f"{MODELS}.refine", f"{MODELS}.shared"))}
    assert bad == set()


def test_shared_imports_no_family_and_no_dispatch():
    bad = {m for m in _imported_by(f"{MODELS}.shared") if not m.startswith(f"{MODELS}.shared")}
    assert bad == set()


def test_families_import_no_dispatch_module():
    dispatch = {f"{MODELS}.{m}" for m in ("family", "train", "predict")}
    for family in ("yolo", "smp", "refine"):
        assert _imported_by(f"{MODELS}.{family}") & dispatch == set(), family
