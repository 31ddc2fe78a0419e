"""A small AST mutator: first-order mutants of the code under test.

Operators (the names used in :class:`~router_rl.judge.config.MutationBudget.operators`):

* ``comparison``: ``<``/``<=``, ``>``/``>=`` swapped, ``==``/``!=``, ``is``/``is not``,
  ``in``/``not in`` negated;
* ``arithmetic``: ``+``/``-``, ``*``/``/``, ``//`` -> ``*``, ``%`` -> ``//``, ``**`` -> ``*``,
  ``&``/``|``, ``<<``/``>>`` (also in augmented assignments), unary minus dropped;
* ``boolean``: ``and``/``or`` swapped, ``not x`` -> ``x``;
* ``constant``: ``True``/``False`` swapped, a number ``n`` -> ``n + 1``, a string -> ``""`` (the
  empty string -> ``"mutant"``); docstrings, f-strings and annotations are left alone;
* ``return``: ``return <expr>`` -> ``return None``.

Each mutant changes exactly one site and is emitted as the full source of the mutated file
(``ast.unparse``, so comments and layout are not kept). Sites are numbered in the AST's
traversal order, which makes mutant ids deterministic for a given source.

Mutation libraries (mutmut, cosmic-ray) were considered; they drive their own test runs and
caches, while the judge needs mutants it can run in its own sandbox with its own budget, so this
small mutator is used instead (its operators are tested one by one).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_rl.judge.config import MUTATION_OPERATORS

_CMP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BIN: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
    ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>",
}  # fmt: skip


@dataclass(frozen=True)
class Site:
    """One place a mutation can be applied.

    Attributes:
        index: Position in traversal order (the id used by :func:`apply_mutation`).
        line: Source line of the mutated node.
        stmt_line: First line of the innermost statement holding it (the line coverage.py
            reports as executed, also for statements over several lines).
        operator: Operator family (one of :data:`~router_rl.judge.config.MUTATION_OPERATORS`).
        description: What changes, e.g. ``"< -> <="``.
    """

    index: int
    line: int
    operator: str
    description: str
    stmt_line: int = 0


@dataclass(frozen=True)
class Mutant:
    """A mutated file of the code under test.

    Attributes:
        id: Position in :func:`generate_mutants`' list.
        file: Path of the mutated file relative to the code's parent folder.
        site: The mutated site.
        source: Full source of the mutated file.
    """

    id: int
    file: str
    site: Site
    source: str


def _const_mutation(value: Any) -> tuple[Any, str] | None:
    if isinstance(value, bool):
        return (not value), f"{value} -> {not value}"
    if isinstance(value, int | float) and not isinstance(value, complex):
        return value + 1, f"{value!r} -> {value + 1!r}"
    if isinstance(value, str):
        return ("mutant" if value == "" else ""), f"{value[:20]!r} -> {'mutant' if value == '' else ''!r}"
    return None


class _Mutator(ast.NodeTransformer):
    def __init__(self, operators: frozenset[str], target: int | None, skip: set[int]) -> None:
        self.operators = operators
        self.target = target
        self.skip = skip
        self.sites: list[Site] = []
        self.applied = False
        self._stmt_lines: list[int] = [0]

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.stmt):
            self._stmt_lines.append(node.lineno)
            try:
                return super().visit(node)
            finally:
                self._stmt_lines.pop()
        return super().visit(node)

    def _site(self, node: ast.AST, operator: str, description: str) -> bool:
        """Record a site; True when it is the one to apply."""
        index = len(self.sites)
        line = getattr(node, "lineno", 0)
        self.sites.append(Site(index, line, operator, description, self._stmt_lines[-1] or line))
        return index == self.target

    # --- skipped regions ------------------------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # docstring
        return self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node

    # --- operators --------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if "comparison" in self.operators and id(node) not in self.skip:
            for i, op in enumerate(node.ops):
                new = _CMP.get(type(op))
                if new is not None and self._site(node, "comparison", f"{_SYMBOL[type(op)]} -> {_SYMBOL[new]}"):
                    node.ops[i] = new()
                    self.applied = True
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        new = _BIN.get(type(node.op))
        if (
            "arithmetic" in self.operators
            and new is not None
            and id(node) not in self.skip
            and self._site(node, "arithmetic", f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}")
        ):
            node.op = new()
            self.applied = True
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        new = _BIN.get(type(node.op))
        if (
            "arithmetic" in self.operators
            and new is not None
            and self._site(node, "arithmetic", f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[new]}=")
        ):
            node.op = new()
            self.applied = True
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if id(node) in self.skip:
            return node
        if isinstance(node.op, ast.USub) and "arithmetic" in self.operators:
            if isinstance(node.operand, ast.Constant):
                return node  # a negative literal: the constant operator covers it
            if self._site(node, "arithmetic", "-x -> x"):
                self.applied = True
                return node.operand
        if isinstance(node.op, ast.Not) and "boolean" in self.operators and self._site(node, "boolean", "not x -> x"):
            self.applied = True
            return node.operand
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if "boolean" in self.operators and id(node) not in self.skip:
            is_and = isinstance(node.op, ast.And)
            if self._site(node, "boolean", "and -> or" if is_and else "or -> and"):
                node.op = ast.Or() if is_and else ast.And()
                self.applied = True
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if "constant" not in self.operators or id(node) in self.skip:
            return node
        mutation = _const_mutation(node.value)
        if mutation is not None and self._site(node, "constant", mutation[1]):
            self.applied = True
            return ast.copy_location(ast.Constant(value=mutation[0]), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if "return" not in self.operators or node.value is None:
            return node
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            return node
        if self._site(node, "return", "return <expr> -> return None"):
            self.applied = True
            return ast.copy_location(ast.Return(value=ast.Constant(value=None)), node)
        return node


def _annotation_ids(tree: ast.AST) -> set[int]:
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def _check_operators(operators: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    ops = frozenset(operators)
    unknown = ops - set(MUTATION_OPERATORS)
    if unknown:
        raise ValueError(f"unknown mutation operator(s) {sorted(unknown)}; expected {list(MUTATION_OPERATORS)}")
    return ops


def mutation_sites(source: str, operators: tuple[str, ...] | frozenset[str] = MUTATION_OPERATORS) -> list[Site]:
    """Every site of ``source`` the operators can mutate, in traversal order.

    Raises:
        SyntaxError: When ``source`` is not valid Python.
    """
    tree = ast.parse(source)
    m = _Mutator(_check_operators(operators), None, _annotation_ids(tree))
    m.visit(tree)
    return m.sites


def apply_mutation(
    source: str, index: int, operators: tuple[str, ...] | frozenset[str] = MUTATION_OPERATORS
) -> str:
    """The source with site ``index`` (see :func:`mutation_sites`) mutated.

    Raises:
        IndexError: When there is no such site.
    """
    tree = ast.parse(source)
    m = _Mutator(_check_operators(operators), index, _annotation_ids(tree))
    mutated = m.visit(tree)
    if not m.applied:
        raise IndexError(f"no mutation site {index} (the source has {len(m.sites)})")
    return ast.unparse(ast.fix_missing_locations(mutated))


def code_files(code: Path) -> dict[str, str]:
    """``{path relative to code's parent: source}`` of the ``.py`` files of a module or package."""
    if code.is_dir():
        return {
            str(p.relative_to(code.parent)): p.read_text()
            for p in sorted(code.rglob("*.py"))
            if "__pycache__" not in p.parts
        }
    return {code.name: code.read_text()}


def generate_mutants(code: Path, operators: tuple[str, ...] = MUTATION_OPERATORS) -> list[Mutant]:
    """All first-order mutants of the code under test (a module or a package folder).

    Raises:
        SyntaxError: When a file of the code under test is not valid Python.
    """
    out: list[Mutant] = []
    for rel, source in code_files(code).items():
        for site in mutation_sites(source, operators):
            out.append(Mutant(len(out), rel, site, apply_mutation(source, site.index, operators)))
    return out
