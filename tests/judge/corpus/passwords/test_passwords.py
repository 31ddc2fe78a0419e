from passwords import has_digit, has_symbol, has_upper, strength, verdict


def test_character_classes():
    assert has_upper("abC")
    assert not has_upper("abc")
    assert has_digit("a1")
    assert not has_digit("ab")
    assert has_symbol("a!")
    assert not has_symbol("a1")


def test_strength_length_thresholds():
    assert strength("abcdefg") == 0
    assert strength("abcdefgh") == 1
    assert strength("abcdefghijk") == 1
    assert strength("abcdefghijkl") == 2


def test_strength_classes():
    assert strength("A") == 1
    assert strength("A1!") == 3


def test_verdict():
    assert verdict("abc") == "weak"
    assert verdict("abcdefgh") == "weak"
    assert verdict("abcdefgH") == "medium"
    assert verdict("abcdefgH1") == "medium"
    assert verdict("abcdefgH1!") == "strong"
