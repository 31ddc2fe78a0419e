import pytest
from pqueue import PriorityQueue


def test_pop_in_priority_order():
    q = PriorityQueue()
    q.push("b", 2)
    q.push("a", 1)
    q.push("c", 3)
    assert q.pop() == ("a", 1)
    assert q.pop() == ("b", 2)
    assert q.pop() == ("c", 3)


def test_ties_are_fifo():
    q = PriorityQueue()
    q.push("x", 1)
    q.push("y", 1)
    assert q.pop()[0] == "x"


def test_update_priority():
    q = PriorityQueue()
    q.push("a", 5)
    q.push("b", 3)
    q.push("a", 1)
    assert len(q) == 2
    assert q.pop() == ("a", 1)


def test_remove_and_contains():
    q = PriorityQueue()
    q.push("a", 1)
    q.push("b", 2)
    q.remove("a")
    assert "a" not in q
    assert "b" in q
    assert q.pop() == ("b", 2)


def test_empty_pop():
    q = PriorityQueue()
    with pytest.raises(KeyError):
        q.pop()
    assert len(q) == 0
