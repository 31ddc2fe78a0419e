"""Binary search on sorted lists."""


def lower_bound(xs, target):
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def upper_bound(xs, target):
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] <= target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def find(xs, target):
    i = lower_bound(xs, target)
    if i < len(xs) and xs[i] == target:
        return i
    return -1


def count(xs, target):
    return upper_bound(xs, target) - lower_bound(xs, target)
