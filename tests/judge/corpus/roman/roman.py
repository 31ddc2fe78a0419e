"""Roman numerals."""

_VALUES = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]


def to_roman(n):
    if not isinstance(n, int) or n < 1 or n > 3999:
        raise ValueError(f"expected an integer in 1..3999, got {n!r}")
    out = []
    for value, letters in _VALUES:
        while n >= value:
            out.append(letters)
            n -= value
    return "".join(out)


def from_roman(s):
    if not s:
        raise ValueError("empty numeral")
    table = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    prev = 0
    for ch in reversed(s.upper()):
        if ch not in table:
            raise ValueError(f"bad digit {ch!r}")
        v = table[ch]
        if v < prev:
            total -= v
        else:
            total += v
            prev = v
    return total
