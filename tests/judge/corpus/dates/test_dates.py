import pytest
from dates import day_of_year, days_between, days_in_month, is_leap


def test_is_leap():
    assert is_leap(2024)
    assert not is_leap(2023)
    assert not is_leap(1900)
    assert is_leap(2000)


def test_days_in_month():
    assert days_in_month(2023, 2) == 28
    assert days_in_month(2024, 2) == 29
    assert days_in_month(2024, 12) == 31
    assert days_in_month(2024, 4) == 30
    for bad in (0, 13):
        with pytest.raises(ValueError):
            days_in_month(2024, bad)


def test_day_of_year():
    assert day_of_year(2023, 1, 1) == 1
    assert day_of_year(2023, 12, 31) == 365
    assert day_of_year(2024, 3, 1) == 61
    with pytest.raises(ValueError):
        day_of_year(2023, 2, 29)
    with pytest.raises(ValueError):
        day_of_year(2023, 1, 0)


def test_days_between():
    assert days_between(2023, 2024) == 365
    assert days_between(2024, 2025) == 366
    assert days_between(2025, 2023) == -731
    assert days_between(2000, 2000) == 0
