from bsearch import count, find, lower_bound, upper_bound

XS = [1, 3, 3, 3, 7, 9]


def test_lower_bound():
    assert lower_bound(XS, 3) == 1
    assert lower_bound(XS, 0) == 0
    assert lower_bound(XS, 10) == 6
    assert lower_bound(XS, 8) == 5


def test_upper_bound():
    assert upper_bound(XS, 3) == 4
    assert upper_bound(XS, 9) == 6
    assert upper_bound(XS, 0) == 0


def test_find():
    assert find(XS, 7) == 4
    assert find(XS, 1) == 0
    assert find(XS, 4) == -1
    assert find(XS, 100) == -1
    assert find([], 1) == -1


def test_count():
    assert count(XS, 3) == 3
    assert count(XS, 9) == 1
    assert count(XS, 5) == 0
