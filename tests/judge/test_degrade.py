"""The degradations of a test file, checked on the AST they produce."""

from __future__ import annotations

import ast

import pytest

from router_rl.judge.checks import check_test_source
from router_rl.judge.degrade import DEGRADATIONS, degrade

SRC = '''
import pytest
from m import f


def test_a():
    assert f(1) == 2
    assert f(2)


def test_b():
    with pytest.raises(ValueError, match="bad"):
        f(-1)


class TestC:
    def test_c(self):
        assert f(3) == "x"

    def test_d(self):
        assert f(4) is None
'''


def _asserts(src: str) -> list[str]:
    return [ast.unparse(n) for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Assert)]


def test_asserts_removed() -> None:
    out = degrade(SRC, "asserts_removed")
    assert _asserts(out) == []
    assert "except Exception:" in out and "raises" not in out
    assert check_test_source(out).no_assert == ["test_a", "test_b", "TestC.test_c", "TestC.test_d"]


def test_wrong_expected() -> None:
    out = degrade(SRC, "wrong_expected")
    assert _asserts(out) == ["assert f(1) == 3", "assert not f(2)", "assert f(3) == 'x?'", "assert not f(4) is None"]
    assert "pytest.raises(KeyboardInterrupt)" in out


def test_half_deleted_import_only_crash_hang() -> None:
    assert check_test_source(degrade(SRC, "half_deleted")).tests == ["test_a", "test_b"]
    only = degrade(SRC, "import_only")
    assert ast.unparse(ast.parse(only)) == "import pytest\nfrom m import f"
    crash = ast.parse(degrade(SRC, "crash"))
    hang = ast.parse(degrade(SRC, "hang"))
    for tree, first in ((crash, "raise RuntimeError('degraded: crash')"), (hang, "import time")):
        fns = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert len(fns) == 4 and all(ast.unparse(fn.body[0]) == first for fn in fns)


def test_unknown_kind() -> None:
    with pytest.raises(KeyError, match="unknown degradation"):
        degrade(SRC, "nope")
    assert set(DEGRADATIONS) == {"asserts_removed", "wrong_expected", "half_deleted", "import_only", "crash", "hang"}
