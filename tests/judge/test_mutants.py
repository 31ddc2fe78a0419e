"""The AST mutator: every operator, skipped regions, determinism."""

from __future__ import annotations

import ast
import textwrap

import pytest

from router_rl.judge.mutants import apply_mutation, generate_mutants, mutation_sites


def _mutants(src: str, op: str) -> list[str]:
    sites = mutation_sites(src, (op,))
    return [apply_mutation(src, s.index, (op,)).strip() for s in sites]


def test_comparison() -> None:
    assert _mutants("a < b", "comparison") == ["a <= b"]
    assert _mutants("a >= b", "comparison") == ["a > b"]
    assert _mutants("a == b != c", "comparison") == ["a != b != c", "a == b == c"]
    assert _mutants("x is None", "comparison") == ["x is not None"]
    assert _mutants("x in y", "comparison") == ["x not in y"]


def test_arithmetic() -> None:
    assert _mutants("a + b * c", "arithmetic") == ["a + b / c", "a - b * c"]
    assert _mutants("x //= 2", "arithmetic") == ["x *= 2"]
    assert _mutants("y = -x", "arithmetic") == ["y = x"]
    assert _mutants("y = -1", "arithmetic") == []  # negative literal: left to `constant`


def test_boolean() -> None:
    assert _mutants("a and b", "boolean") == ["a or b"]
    assert _mutants("not a", "boolean") == ["a"]


def test_constant() -> None:
    assert _mutants("x = 3", "constant") == ["x = 4"]
    assert _mutants("x = 0.5", "constant") == ["x = 1.5"]
    assert _mutants("x = True", "constant") == ["x = False"]
    assert _mutants("x = 'ab'", "constant") == ["x = ''"]
    assert _mutants("x = ''", "constant") == ["x = 'mutant'"]
    assert _mutants("x = None", "constant") == []


def test_return() -> None:
    assert _mutants("def f():\n    return 1 + 2\n", "return") == ["def f():\n    return None"]
    assert _mutants("def f():\n    return\n", "return") == []
    assert _mutants("def f():\n    return None\n", "return") == []


def test_docstrings_fstrings_annotations_untouched() -> None:
    src = textwrap.dedent(
        '''
        """Module docstring."""
        def f(x: "Foo" = 1) -> "Bar":
            """Function docstring."""
            y: "Baz" = 2
            return f"{x} and {y}"
        '''
    )
    sites = mutation_sites(src)
    assert [(s.operator, s.description) for s in sites] == [
        ("constant", "1 -> 2"),
        ("constant", "2 -> 3"),
        ("return", "return <expr> -> return None"),
    ]


def test_every_mutant_is_valid_and_differs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.judge.conftest import MODULE

    p = tmp_path / "tiny.py"
    p.write_text(MODULE)
    mutants = generate_mutants(p)
    assert len(mutants) == len(mutation_sites(MODULE)) > 10
    original = ast.unparse(ast.parse(MODULE))
    for m in mutants:
        ast.parse(m.source)
        assert m.source != original and m.file == "tiny.py"
    assert [m.site for m in generate_mutants(p)] == [m.site for m in mutants]  # deterministic


def test_bad_index_and_operator() -> None:
    with pytest.raises(IndexError, match="no mutation site 5"):
        apply_mutation("a < b", 5)
    with pytest.raises(ValueError, match="unknown mutation operator"):
        mutation_sites("a < b", ("nope",))


def test_sites_know_their_statement_line() -> None:
    src = "TABLE = [\n    (1, 'a'),\n    (2, 'b'),\n]\n\n\ndef f(x):\n    return (x +\n            1)\n"
    sites = mutation_sites(src)
    by_desc = {(s.line, s.description): s.stmt_line for s in sites}
    assert by_desc[(2, "1 -> 2")] == 1 and by_desc[(3, "'b' -> ''")] == 1  # coverage reports line 1
    assert by_desc[(8, "+ -> -")] == 8 and by_desc[(9, "1 -> 2")] == 8
