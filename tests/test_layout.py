"""The code layout's rules that import-linter cannot see, checked on every run.

import-linter (run by ``make lint``) checks the floors and that no package
has an import cycle. These checks add what keeps those contracts honest: an
import of segflow inside a function can hide a cycle from a reader, and a
private name imported from another module couples two homes of a concept.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "segflow"
MODULES = sorted(SRC.rglob("*.py"))

#: Imports that may sit inside a function, and why. No cycle is behind any of them.
LAZY = {
    # FastAPI and uvicorn load only for `segflow serve`: measured 0.33 s more
    # start-up (0.60 s -> 0.93 s) for every other command.
    "segflow.web.app": "the web app loads only when serving",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _segflow_imports(tree: ast.AST) -> list[tuple[ast.ImportFrom | ast.Import, int]]:
    """Every import of a segflow module, with the depth of functions around it."""
    found: list[tuple[ast.ImportFrom | ast.Import, int]] = []

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            inner = depth + isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("segflow"):
                found.append((child, inner))
            elif isinstance(child, ast.Import) and any(
                a.name.startswith("segflow") for a in child.names
            ):
                found.append((child, inner))
            visit(child, inner)

    visit(tree, 0)
    return found


def test_the_checks_see_every_module() -> None:
    names = {_module_name(p) for p in MODULES}
    assert {"segflow.datasets", "segflow.engine", "segflow.cli.main", "segflow.web.api"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_segflow_is_imported_at_module_level_only(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node, depth in _segflow_imports(tree)
        if depth > 0 and not (isinstance(node, ast.ImportFrom) and node.module in LAZY)
    ]
    assert not inside, f"{path.name} imports segflow inside a function: {inside}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_name_crosses_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = [
        f"line {node.lineno}: {alias.name} from {node.module}"
        for node, _ in _segflow_imports(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not private, f"{path.name} imports private names: {private}"
