import pytest
from primes import factorize, is_prime, primes_up_to


def test_is_prime_small():
    assert not is_prime(0)
    assert not is_prime(1)
    assert is_prime(2)
    assert is_prime(3)
    assert not is_prime(4)


def test_is_prime_larger():
    assert is_prime(97)
    assert not is_prime(91)
    assert not is_prime(25)
    assert is_prime(7919)


def test_primes_up_to():
    assert primes_up_to(1) == []
    assert primes_up_to(2) == [2]
    assert primes_up_to(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert primes_up_to(49)[-1] == 47


def test_factorize():
    assert factorize(1) == []
    assert factorize(12) == [2, 2, 3]
    assert factorize(97) == [97]
    assert factorize(49) == [7, 7]
    with pytest.raises(ValueError):
        factorize(0)
