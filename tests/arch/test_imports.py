"""Layering rules the code keeps (issue 17): no private name imported across the dakd_edge / kernels /
export / train boundaries, and kernels never import export (export registers its nodes with them)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AREAS = ("kernels", "export", "train")  # installed as dakd_edge.<area>; everything else is "dakd_edge"


def area_of_file(p: Path) -> str:
    top = p.relative_to(REPO).parts[0]
    return top if top in AREAS else "dakd_edge"


def area_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "dakd_edge":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in AREAS else "dakd_edge"


def imports(p: Path):
    tree = ast.parse(p.read_text(), str(p))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None


def sources() -> list[Path]:
    return [p for d in ("dakd_edge", *AREAS) for p in (REPO / d).rglob("*.py")]


def test_no_private_imports_across_areas() -> None:
    bad = []
    for p in sources():
        own = area_of_file(p)
        for line, module, name in imports(p):
            other = area_of_module(module)
            if other is None or other == own:
                continue
            private = any(part.startswith("_") and not part.startswith("__") for part in module.split("."))
            if private or (name is not None and name.startswith("_") and not name.startswith("__")):
                bad.append(f"{p.relative_to(REPO)}:{line}: {module}.{name}")
    assert not bad, "private imports across areas:\n" + "\n".join(bad)


def test_kernels_do_not_import_export() -> None:
    bad = [
        f"{p.relative_to(REPO)}:{line}: {module}"
        for p in (REPO / "kernels").rglob("*.py")
        for line, module, _ in imports(p)
        if area_of_module(module) in ("export", "train")
    ]
    assert not bad, "\n".join(bad)
