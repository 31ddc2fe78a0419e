"""Rational numbers from scratch."""


def gcd(a, b):
    a, b = abs(a), abs(b)
    while b:
        a, b = b, a % b
    return a


def lcm(a, b):
    if a == 0 or b == 0:
        return 0
    return abs(a * b) // gcd(a, b)


def reduce(num, den):
    if den == 0:
        raise ZeroDivisionError("denominator is zero")
    g = gcd(num, den)
    num, den = num // g, den // g
    if den < 0:
        num, den = -num, -den
    return num, den


def add(a, b):
    return reduce(a[0] * b[1] + b[0] * a[1], a[1] * b[1])


def mul(a, b):
    return reduce(a[0] * b[0], a[1] * b[1])
