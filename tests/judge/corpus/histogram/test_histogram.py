import pytest
from histogram import bin_index, histogram, render


def test_bin_index():
    assert bin_index(0.0, 0.0, 1.0, 5) == 0
    assert bin_index(2.5, 0.0, 1.0, 5) == 2
    assert bin_index(-3.0, 0.0, 1.0, 5) == 0
    assert bin_index(5.0, 0.0, 1.0, 5) == 4
    assert bin_index(4.99, 0.0, 1.0, 5) == 4
    with pytest.raises(ValueError):
        bin_index(1.0, 0.0, 0.0, 5)


def test_histogram():
    assert histogram([0, 1, 1, 2, 9], 0, 10, 5) == [3, 1, 0, 0, 1]
    assert histogram([], 0, 1, 2) == [0, 0]
    with pytest.raises(ValueError):
        histogram([1], 1, 1, 3)
    with pytest.raises(ValueError):
        histogram([1], 0, 1, 0)


def test_render_small():
    assert render([1, 3]) == "  1 #\n  3 ###"
    assert render([]) == ""


def test_render_scaled():
    out = render([80, 40], char="*").splitlines()
    assert out[0] == " 80 " + "*" * 40
    assert out[1] == " 40 " + "*" * 20
