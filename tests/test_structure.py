"""Code that fits on a screen: no module of the package over 600 lines, no function or method
over 80 (decorators not counted; the CLI's argument tables included). Read with `ast`, so
nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "wae"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function and method in `tree`, nested
    ones included; a function's lines run from its `def` to its last line."""
    out: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append(
                    (name, child.lineno, (child.end_lineno or child.lineno) - child.lineno + 1)
                )
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def test_the_package_is_there() -> None:
    assert (SRC / "__init__.py").is_file() and len(_modules()) > 20


def test_no_module_over_600_lines() -> None:
    long = []
    for path in _modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(SRC.parent)}: {n} lines")
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_over_80_lines() -> None:
    long = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line, n in _function_lengths(tree):
            if n > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(SRC.parent)}:{line} {name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_counts_are_what_they_say() -> None:
    """A decorated 3-line method counts 3 (decorators excluded), nested functions count."""
    tree = ast.parse(
        "class A:\n"
        "    @staticmethod\n"
        "    def f():\n"
        "        def g():\n"
        "            pass\n"
        "        return g\n"
        "async def h():\n"
        "    pass\n"
    )
    assert _function_lengths(tree) == [("A.f", 3, 4), ("A.f.g", 4, 2), ("h", 7, 2)]
