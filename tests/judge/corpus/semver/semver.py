"""Semantic version parsing and comparison."""

import re

_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.]+))?$")


def parse(v):
    m = _RE.match(v.strip())
    if m is None:
        raise ValueError(f"not a semantic version: {v!r}")
    major, minor, patch, pre = m.groups()
    return int(major), int(minor), int(patch), pre


def compare(a, b):
    pa, pb = parse(a), parse(b)
    if pa[:3] != pb[:3]:
        return -1 if pa[:3] < pb[:3] else 1
    if pa[3] == pb[3]:
        return 0
    if pa[3] is None:
        return 1
    if pb[3] is None:
        return -1
    return -1 if pa[3] < pb[3] else 1


def bump(v, part):
    major, minor, patch, _ = parse(v)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"bad part {part!r}")
