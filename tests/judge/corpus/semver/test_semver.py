import pytest
from semver import bump, compare, parse


def test_parse():
    assert parse("1.2.3") == (1, 2, 3, None)
    assert parse(" 10.0.1-rc.1 ") == (10, 0, 1, "rc.1")
    with pytest.raises(ValueError):
        parse("1.2")


def test_compare_numbers():
    assert compare("1.2.3", "1.2.3") == 0
    assert compare("1.2.3", "1.10.0") == -1
    assert compare("2.0.0", "1.99.99") == 1


def test_compare_prerelease():
    assert compare("1.0.0-alpha", "1.0.0") == -1
    assert compare("1.0.0", "1.0.0-alpha") == 1
    assert compare("1.0.0-alpha", "1.0.0-beta") == -1
    assert compare("1.0.0-beta", "1.0.0-alpha") == 1


def test_bump():
    assert bump("1.2.3", "major") == "2.0.0"
    assert bump("1.2.3", "minor") == "1.3.0"
    assert bump("1.2.3", "patch") == "1.2.4"
    with pytest.raises(ValueError):
        bump("1.2.3", "build")
