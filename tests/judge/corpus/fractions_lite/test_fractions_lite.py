import pytest
from fractions_lite import add, gcd, lcm, mul, reduce


def test_gcd():
    assert gcd(12, 18) == 6
    assert gcd(-4, 6) == 2
    assert gcd(7, 0) == 7


def test_lcm():
    assert lcm(4, 6) == 12
    assert lcm(0, 5) == 0
    assert lcm(-3, 5) == 15
    assert lcm(5, 0) == 0


def test_reduce():
    assert reduce(6, 8) == (3, 4)
    assert reduce(1, -2) == (-1, 2)
    assert reduce(-3, -9) == (1, 3)
    with pytest.raises(ZeroDivisionError):
        reduce(1, 0)


def test_add():
    assert add((1, 2), (1, 3)) == (5, 6)
    assert add((1, 2), (-1, 2)) == (0, 1)


def test_mul():
    assert mul((2, 3), (3, 4)) == (1, 2)
    assert mul((-1, 2), (2, 5)) == (-1, 5)
