"""The layout is the architecture: imports point down only (docs/architecture.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["domain", "persistence", "payments", "resolvers", "schema", "app"]
# What each layer may import from the project (besides itself).
ALLOWED = {
    "domain": set(),
    "persistence": {"domain"},
    "payments": {"domain"},
    "resolvers": {"domain", "persistence", "payments"},
    "schema": {"domain", "persistence", "payments", "resolvers"},
    "app": {"domain", "persistence", "payments", "resolvers", "schema"},
}
FRAMEWORKS = {"sqlalchemy", "strawberry", "starlette", "stripe", "alembic", "uvicorn", "asyncpg", "aiosqlite"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_point_down(layer: str) -> None:
    upward = {}
    for path in (ROOT / layer).rglob("*.py"):
        wrong = (imported_roots(path) & set(LAYERS)) - ALLOWED[layer] - {layer}
        if wrong:
            upward[str(path.relative_to(ROOT))] = sorted(wrong)
    assert upward == {}


def test_domain_is_free_of_frameworks() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FRAMEWORKS)
        for path in (ROOT / "domain").rglob("*.py")
        if imported_roots(path) & FRAMEWORKS
    }
    assert offenders == {}
