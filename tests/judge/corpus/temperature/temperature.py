"""Temperature conversions."""

ABSOLUTE_ZERO_C = -273.15


def c_to_f(c):
    if c < ABSOLUTE_ZERO_C:
        raise ValueError("below absolute zero")
    return c * 9 / 5 + 32


def f_to_c(f):
    c = (f - 32) * 5 / 9
    if c < ABSOLUTE_ZERO_C:
        raise ValueError("below absolute zero")
    return c


def c_to_k(c):
    if c < ABSOLUTE_ZERO_C:
        raise ValueError("below absolute zero")
    return c - ABSOLUTE_ZERO_C


def classify(c):
    if c <= 0:
        return "freezing"
    if c < 15:
        return "cold"
    if c < 25:
        return "mild"
    return "hot"
