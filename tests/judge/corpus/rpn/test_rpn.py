import pytest
from rpn import evaluate, tokenize


def test_tokenize():
    assert tokenize("3 4 +") == [3.0, 4.0, "+"]
    assert tokenize("") == []
    with pytest.raises(ValueError):
        tokenize("3 x +")


def test_evaluate_operators():
    assert evaluate("3 4 +") == 7
    assert evaluate("10 4 -") == 6
    assert evaluate("3 4 *") == 12
    assert evaluate("8 2 /") == 4


def test_evaluate_nested():
    assert evaluate("5 1 2 + 4 * + 3 -") == 14


def test_errors():
    with pytest.raises(ValueError):
        evaluate("1 +")
    with pytest.raises(ValueError):
        evaluate("1 2")
    with pytest.raises(ZeroDivisionError):
        evaluate("1 0 /")
