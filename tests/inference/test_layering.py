"""The import graph of the installed package has no circle (issue 17, point 3).

Every ``import`` counts, at module level and inside functions (a lazy import is still a dependency),
except those under ``if TYPE_CHECKING:`` (annotations only, never run). Modules of kernels/, export/
and train/ are named as installed (``dakd_edge.kernels.*`` ...). Importing a package's own ancestors
(``from dakd_edge import __version__``) is no edge: they are loaded before any of their modules anyway.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {
    "dakd_edge": "dakd_edge",
    "kernels": "dakd_edge.kernels",
    "export": "dakd_edge.export",
    "train": "dakd_edge.train",
}


def module_name(p: Path) -> str:
    top, *rest = p.relative_to(REPO).with_suffix("").parts
    parts = [*ROOTS[top].split("."), *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for top in ROOTS for p in (REPO / top).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imported(p: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules that ``p`` (module ``name``) imports anywhere, TYPE_CHECKING blocks aside."""
    is_pkg = p.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                pkg = name.split(".")[: len(name.split(".")) - (0 if is_pkg else 1) - (node.level - 1)]
                base = ".".join([*pkg, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(p.read_text(), str(p)))
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in modules and m != name and m not in ancestors}


def import_graph() -> dict[str, set[str]]:
    src = sources()
    return {name: imported(p, name, set(src)) for name, p in src.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (c := walk(w)) is not None:
                return c
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (c := walk(v)) is not None:
            return c
    return None


def test_the_import_graph_has_no_circle() -> None:
    graph = import_graph()
    assert "dakd_edge.inference.segment" in graph and "dakd_edge.kernels.dispatch" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_scene_pipeline_does_not_import_the_predictor() -> None:
    """The predictor calls the scene pipeline (``Predictor.segment``); the pipeline never imports it back."""
    graph = import_graph()
    assert "dakd_edge.inference.predictor" not in graph["dakd_edge.inference.segment"]


def test_the_checker_sees_lazy_imports_and_circles(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dakd_edge.x import C\n"
        "def f():\n    from dakd_edge.y import g\n    return g\n"
    )
    assert imported(a, "dakd_edge.a", {"dakd_edge.x", "dakd_edge.y"}) == {"dakd_edge.y"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
