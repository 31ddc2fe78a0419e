import pytest
from stack import Stack, StackEmpty, StackFull


def test_push_pop_order():
    s = Stack()
    s.push(1)
    s.push(2)
    assert s.pop() == 2
    assert s.pop() == 1


def test_pop_empty_raises():
    with pytest.raises(StackEmpty):
        Stack().pop()


def test_capacity():
    s = Stack(capacity=2)
    s.push("a")
    assert not s.is_full()
    s.push("b")
    assert s.is_full()
    with pytest.raises(StackFull):
        s.push("c")
    with pytest.raises(ValueError):
        Stack(capacity=0)


def test_peek():
    s = Stack()
    assert s.peek() is None
    s.push(5)
    assert s.peek() == 5
    assert len(s) == 1


def test_len_and_empty():
    s = Stack()
    assert s.is_empty()
    assert len(s) == 0
    s.push(1)
    assert not s.is_empty()
    assert len(s) == 1
