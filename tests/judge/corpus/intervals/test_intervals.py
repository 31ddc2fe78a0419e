import pytest
from intervals import contains, merge, overlaps, total_length


def test_overlaps():
    assert overlaps((1, 3), (3, 5))
    assert overlaps((2, 8), (3, 4))
    assert not overlaps((1, 2), (3, 4))
    assert not overlaps((5, 6), (1, 4))


def test_merge_basic():
    assert merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]
    assert merge([]) == []


def test_merge_adjacent_and_nested():
    assert merge([(1, 2), (3, 4)]) == [(1, 4)]
    assert merge([(1, 10), (2, 3)]) == [(1, 10)]
    assert merge([(5, 6), (1, 2)]) == [(1, 2), (5, 6)]


def test_merge_rejects_bad():
    with pytest.raises(ValueError):
        merge([(3, 1)])


def test_total_length():
    assert total_length([(1, 3), (2, 4)]) == 4
    assert total_length([(1, 1)]) == 1


def test_contains():
    assert contains([(1, 3), (7, 9)], 3)
    assert contains([(1, 3), (7, 9)], 7)
    assert not contains([(1, 3), (7, 9)], 5)
    assert not contains([], 0)
