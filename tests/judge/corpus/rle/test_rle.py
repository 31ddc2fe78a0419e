import pytest
from rle import compression_ratio, decode, encode, to_string


def test_encode():
    assert encode("aaabcc") == [("a", 3), ("b", 1), ("c", 2)]
    assert encode("") == []
    assert encode("x") == [("x", 1)]


def test_decode():
    assert decode([("a", 3), ("b", 1)]) == "aaab"
    with pytest.raises(ValueError):
        decode([("a", 0)])


def test_round_trip():
    for s in ("", "abc", "aaaa", "aabbbaa"):
        assert decode(encode(s)) == s


def test_to_string():
    assert to_string([("a", 3), ("b", 1), ("c", 2)]) == "3ab2c"


def test_compression_ratio():
    assert compression_ratio("") == 1.0
    assert compression_ratio("aaaa") == 0.5
    assert compression_ratio("ab") == 1.0
