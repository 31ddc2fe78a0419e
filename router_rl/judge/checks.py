"""Static checks of a test file: syntax, test functions, empty tests, tests that assert nothing."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

_RAISES = {"raises", "warns", "fail", "approx", "deprecated_call"}


@dataclass(frozen=True)
class TestFileChecks:
    """What the test file looks like before it runs.

    Attributes:
        syntax_ok: The file parses as Python.
        syntax_error: ``line N: message`` when it does not.
        tests: Qualified names of the test functions (``test_x`` or ``TestC.test_x``).
        empty: Tests whose body does nothing (only ``pass``, ``...`` or a docstring).
        no_assert: Tests that check nothing (no ``assert``, no ``pytest.raises/warns/fail``,
            no ``self.assert*``/``*.assert_*`` call, no call of a module-level helper that does
            one of these).
    """

    __test__ = False

    syntax_ok: bool
    syntax_error: str | None = None
    tests: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    no_assert: list[str] = field(default_factory=list)

    @property
    def asserting_rate(self) -> float:
        """Share of test functions that check something and are not empty (0 when none)."""
        if not self.tests:
            return 0.0
        bad = set(self.no_assert) | set(self.empty)
        return sum(1 for t in self.tests if t not in bad) / len(self.tests)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "syntax_ok": self.syntax_ok,
            "syntax_error": self.syntax_error,
            "test_functions": len(self.tests),
            "empty_tests": self.empty,
            "tests_without_assertions": self.no_assert,
            "asserting_rate": round(self.asserting_rate, 6),
        }


def _is_empty(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for stmt in fn.body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring or ``...``
        return False
    return True


def _checks_something(fn: ast.AST, helpers: frozenset[str] = frozenset()) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in _RAISES or name.startswith("assert") or name in helpers:
                return True
    return False


def find_test_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """``(qualified name, node)`` of the module-level ``test*`` functions and ``Test*`` methods."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name.startswith("test"):
                    found.append((f"{node.name}.{sub.name}", sub))
    return found


def check_test_source(source: str) -> TestFileChecks:
    """Run the static checks on the text of a test file."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return TestFileChecks(syntax_ok=False, syntax_error=f"line {e.lineno}: {e.msg}")
    fns = find_test_functions(tree)
    helpers = frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("test") and _checks_something(node)
    )
    return TestFileChecks(
        syntax_ok=True,
        tests=[name for name, _ in fns],
        empty=[name for name, fn in fns if _is_empty(fn)],
        no_assert=[name for name, fn in fns if not _checks_something(fn, helpers)],
    )
