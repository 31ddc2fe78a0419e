import pytest
from temperature import c_to_f, c_to_k, classify, f_to_c


def test_c_to_f():
    assert c_to_f(0) == 32
    assert c_to_f(100) == 212
    assert c_to_f(-40) == -40


def test_f_to_c():
    assert f_to_c(32) == 0
    assert f_to_c(212) == pytest.approx(100)


def test_c_to_k():
    assert c_to_k(0) == pytest.approx(273.15)
    assert c_to_k(-273.15) == 0


def test_below_absolute_zero():
    with pytest.raises(ValueError):
        c_to_f(-300)
    with pytest.raises(ValueError):
        f_to_c(-500)
    with pytest.raises(ValueError):
        c_to_k(-273.16)


def test_classify_boundaries():
    assert classify(-5) == "freezing"
    assert classify(0) == "freezing"
    assert classify(0.5) == "cold"
    assert classify(15) == "mild"
    assert classify(24.9) == "mild"
    assert classify(25) == "hot"
