"""Static checks of test files."""

from __future__ import annotations

import textwrap

from router_rl.judge.checks import check_test_source


def test_syntax_error_names_the_line() -> None:
    c = check_test_source("def test_x(:\n    pass\n")
    assert not c.syntax_ok and c.syntax_error is not None and c.syntax_error.startswith("line 1")
    assert c.asserting_rate == 0.0


def test_finds_empty_and_assertless_tests() -> None:
    src = textwrap.dedent(
        '''
        import pytest

        def helper(x):
            assert x > 0

        def test_ok():
            assert 1 + 1 == 2

        def test_empty():
            """Nothing here."""
            pass

        def test_calls_only():
            print(3)

        def test_raises():
            with pytest.raises(ZeroDivisionError):
                1 / 0

        def test_helper():
            helper(3)

        class TestThing:
            def test_unittest_style(self):
                self.assertEqual(1, 1)

            def test_nothing(self):
                ...

        def not_a_test():
            pass
        '''
    )
    c = check_test_source(src)
    assert c.tests == [
        "test_ok", "test_empty", "test_calls_only", "test_raises", "test_helper",
        "TestThing.test_unittest_style", "TestThing.test_nothing",
    ]
    assert c.empty == ["test_empty", "TestThing.test_nothing"]
    assert c.no_assert == ["test_empty", "test_calls_only", "TestThing.test_nothing"]
    assert c.asserting_rate == 4 / 7


def test_no_tests_rate_zero() -> None:
    c = check_test_source("import os\n")
    assert c.syntax_ok and c.tests == [] and c.asserting_rate == 0.0
