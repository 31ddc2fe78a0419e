import pytest
from roman import from_roman, to_roman


def test_to_roman_simple():
    assert to_roman(1) == "I"
    assert to_roman(3) == "III"
    assert to_roman(8) == "VIII"


def test_to_roman_subtractive():
    assert to_roman(4) == "IV"
    assert to_roman(9) == "IX"
    assert to_roman(1994) == "MCMXCIV"


def test_to_roman_bounds():
    assert to_roman(3999) == "MMMCMXCIX"
    for bad in (0, 4000, -1, 2.5):
        with pytest.raises(ValueError):
            to_roman(bad)


def test_from_roman_values():
    assert from_roman("XIV") == 14
    assert from_roman("mcmxciv") == 1994
    assert from_roman("MMMCMXCIX") == 3999


def test_from_roman_errors():
    with pytest.raises(ValueError):
        from_roman("")
    with pytest.raises(ValueError):
        from_roman("XIZ")


def test_round_trip():
    for n in (1, 2, 4, 5, 40, 90, 400, 944, 2024):
        assert from_roman(to_roman(n)) == n
