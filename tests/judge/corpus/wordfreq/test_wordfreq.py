import pytest
from wordfreq import frequencies, lexical_density, top, words


def test_words():
    assert words("Hello, world! It's fine.") == ["hello", "world", "it's", "fine"]
    assert words("") == []


def test_frequencies():
    assert frequencies("a b a") == {"a": 2, "b": 1}
    assert frequencies("the cat the hat", stopwords={"the"}) == {"cat": 1, "hat": 1}


def test_top():
    text = "b a c a b a"
    assert top(text, 2) == [("a", 3), ("b", 2)]
    assert top("y x", 5) == [("x", 1), ("y", 1)]
    with pytest.raises(ValueError):
        top(text, 0)


def test_lexical_density():
    assert lexical_density("a a b b") == 0.5
    assert lexical_density("") == 0.0
    assert lexical_density("one two") == 1.0
