"""Shared fixtures of the judge tests: a tiny module under test and its tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router_rl.judge.config import JudgeConfig, MutationBudget, SandboxLimits

collect_ignore = ["corpus"]

MODULE = textwrap.dedent(
    '''
    """A tiny module under test."""


    def clamp(x, lo, hi):
        if x < lo:
            return lo
        if x > hi:
            return hi
        return x


    def is_even(n):
        return n % 2 == 0


    def total(xs):
        s = 0
        for x in xs:
            s += x
        return s
    '''
)

GOOD_TESTS = textwrap.dedent(
    """
    from tiny import clamp, is_even, total


    def test_clamp_low():
        assert clamp(-5, 0, 10) == 0


    def test_clamp_high():
        assert clamp(50, 0, 10) == 10


    def test_clamp_edges():
        assert clamp(0, 0, 10) == 0
        assert clamp(10, 0, 10) == 10
        assert clamp(5, 0, 10) == 5


    def test_is_even():
        assert is_even(4)
        assert not is_even(3)


    def test_total():
        assert total([1, 2, 3]) == 6
        assert total([]) == 0
    """
)

NO_ASSERT_TESTS = textwrap.dedent(
    """
    from tiny import clamp, is_even, total


    def test_clamp_low():
        clamp(-5, 0, 10)


    def test_clamp_high():
        clamp(50, 0, 10)


    def test_clamp_edges():
        clamp(0, 0, 10)
        clamp(10, 0, 10)
        clamp(5, 0, 10)


    def test_is_even():
        is_even(4)
        is_even(3)


    def test_total():
        total([1, 2, 3])
        total([])
    """
)


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """``(module, good test file)`` in a fresh folder."""
    code = tmp_path / "tiny.py"
    code.write_text(MODULE)
    tests = tmp_path / "test_tiny.py"
    tests.write_text(GOOD_TESTS)
    return code, tests


def fast_config(*, mutation: bool = True, max_mutants: int = 40, wall_timeout_s: float = 60.0) -> JudgeConfig:
    """A judge config with small limits for the unit tests."""
    return JudgeConfig(
        limits=SandboxLimits(wall_timeout_s=wall_timeout_s, per_test_timeout_s=min(5.0, wall_timeout_s)),
        mutation=MutationBudget(enabled=mutation, max_mutants=max_mutants, workers=2),
    )
