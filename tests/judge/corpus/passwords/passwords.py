"""Password strength rules."""

import string


def has_upper(p):
    return any(c.isupper() for c in p)


def has_digit(p):
    return any(c.isdigit() for c in p)


def has_symbol(p):
    return any(c in string.punctuation for c in p)


def strength(p):
    score = 0
    if len(p) >= 8:
        score += 1
    if len(p) >= 12:
        score += 1
    if has_upper(p):
        score += 1
    if has_digit(p):
        score += 1
    if has_symbol(p):
        score += 1
    return score


def verdict(p):
    s = strength(p)
    if s <= 1:
        return "weak"
    if s <= 3:
        return "medium"
    return "strong"
