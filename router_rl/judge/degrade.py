"""Degraded versions of a good test file, generated on the AST (the judge's validation set).

Each degradation (a name in :data:`DEGRADATIONS`) turns a test file into a worse one:

* ``asserts_removed``: every ``assert X`` becomes the bare expression ``X`` and every
  ``with pytest.raises/warns(...)`` becomes ``try: ... except Exception: pass``; the tests still
  run the code but check nothing;
* ``wrong_expected``: in ``assert a == <constant>`` the constant is changed, any other assert is
  negated, and ``pytest.raises(E)`` expects ``KeyboardInterrupt`` instead;
* ``half_deleted``: the last ``floor(n / 2)`` test functions are removed;
* ``import_only``: only the module-level imports are kept;
* ``crash``: every test raises ``RuntimeError`` first;
* ``hang``: every test sleeps for ~11.6 days first.

The output is ``ast.unparse``'d source (comments are not kept).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from router_rl.judge.checks import find_test_functions

_RAISES = {"raises", "warns"}


def _is_raises_ctx(item: ast.withitem) -> bool:
    call = item.context_expr
    if not isinstance(call, ast.Call):
        return False
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in _RAISES


class _RemoveAsserts(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        return ast.copy_location(ast.Expr(value=node.test), node)

    def visit_With(self, node: ast.With) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        if not any(_is_raises_ctx(i) for i in node.items):
            return node
        handler = ast.ExceptHandler(type=ast.Name(id="Exception", ctx=ast.Load()), name=None, body=[ast.Pass()])
        return ast.copy_location(ast.Try(body=node.body, handlers=[handler], orelse=[], finalbody=[]), node)


def _perturb(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    return None


class _WrongExpected(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        t = node.test
        if (
            isinstance(t, ast.Compare)
            and len(t.ops) == 1
            and isinstance(t.ops[0], ast.Eq)
            and isinstance(t.comparators[0], ast.Constant)
        ):
            new = _perturb(t.comparators[0].value)
            if new is not None:
                t.comparators[0] = ast.Constant(value=new)
                return node
        node.test = ast.UnaryOp(op=ast.Not(), operand=t)
        return node

    def visit_With(self, node: ast.With) -> ast.AST:
        self.generic_visit(node)
        for item in node.items:
            if _is_raises_ctx(item):
                call = item.context_expr
                assert isinstance(call, ast.Call)
                call.args = [ast.Name(id="KeyboardInterrupt", ctx=ast.Load())]
                call.keywords = [k for k in call.keywords if k.arg != "match"]
        return node


def _prepend(tree: ast.Module, stmts: Callable[[], list[ast.stmt]]) -> ast.Module:
    for _, fn in find_test_functions(tree):
        fn.body = [*stmts(), *fn.body]
    return tree


def _half_deleted(tree: ast.Module) -> ast.Module:
    fns = find_test_functions(tree)
    drop = {id(fn) for _, fn in fns[len(fns) - len(fns) // 2 :]}

    def keep(body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for stmt in body:
            if id(stmt) in drop:
                continue
            if isinstance(stmt, ast.ClassDef):
                stmt.body = keep(stmt.body) or [ast.Pass()]
            out.append(stmt)
        return out

    tree.body = keep(tree.body)
    return tree


def _import_only(tree: ast.Module) -> ast.Module:
    tree.body = [s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)]
    return tree


def _crash() -> list[ast.stmt]:
    return ast.parse("raise RuntimeError('degraded: crash')").body


def _hang() -> list[ast.stmt]:
    return ast.parse("import time\ntime.sleep(10 ** 6)").body


DEGRADATIONS: dict[str, Callable[[ast.Module], ast.Module]] = {
    "asserts_removed": lambda t: _RemoveAsserts().visit(t),
    "wrong_expected": lambda t: _WrongExpected().visit(t),
    "half_deleted": _half_deleted,
    "import_only": _import_only,
    "crash": lambda t: _prepend(t, _crash),
    "hang": lambda t: _prepend(t, _hang),
}
"""Degradation name -> AST transform (in place)."""


def degrade(source: str, kind: str) -> str:
    """The ``kind`` degradation of a test file's source.

    Raises:
        KeyError: When ``kind`` is not in :data:`DEGRADATIONS`.
        SyntaxError: When ``source`` is not valid Python.
    """
    if kind not in DEGRADATIONS:
        raise KeyError(f"unknown degradation {kind!r}; expected one of {list(DEGRADATIONS)}")
    tree = DEGRADATIONS[kind](ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
