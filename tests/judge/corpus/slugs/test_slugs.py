import pytest
from slugs import slugify, title_case, truncate


def test_slugify():
    assert slugify("  Hello, World!  ") == "hello-world"
    assert slugify("A_B c", sep="_") == "a_b_c"
    assert slugify("---") == ""


def test_truncate_short_text_unchanged():
    assert truncate("abc", 5) == "abc"
    assert truncate("abcde", 5) == "abcde"


def test_truncate_long_text():
    assert truncate("abcdefgh", 6) == "abc..."
    assert truncate("abcdefgh", 4, ellipsis="~") == "abc~"


def test_truncate_too_narrow():
    with pytest.raises(ValueError):
        truncate("abcdef", 2)


def test_title_case():
    assert title_case("the lord OF the rings") == "The Lord of the Rings"
    assert title_case("a tale") == "A Tale"
    assert title_case("") == ""
