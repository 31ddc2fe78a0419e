import pytest
from bank import Account, InsufficientFunds


def test_deposit():
    a = Account("ann")
    assert a.deposit(50) == 50
    assert a.deposit(25) == 75
    assert a.history == [("deposit", 50), ("deposit", 25)]


def test_deposit_must_be_positive():
    with pytest.raises(ValueError):
        Account("ann").deposit(0)


def test_withdraw_within_overdraft():
    a = Account("bob", balance=10, overdraft=5)
    assert a.withdraw(15) == -5
    with pytest.raises(InsufficientFunds):
        a.withdraw(1)


def test_withdraw_must_be_positive():
    with pytest.raises(ValueError):
        Account("bob", balance=10).withdraw(-1)


def test_invalid_construction():
    with pytest.raises(ValueError):
        Account("x", balance=-1)
    with pytest.raises(ValueError):
        Account("x", overdraft=-1)


def test_transfer():
    a, b = Account("a", balance=30), Account("b")
    a.transfer(b, 20)
    assert a.balance == 10
    assert b.balance == 20
    with pytest.raises(InsufficientFunds):
        a.transfer(b, 11)
    assert b.balance == 20
