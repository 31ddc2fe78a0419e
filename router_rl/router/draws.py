"""Seeded per-request draws: a uniform from a seed and string parts, and an inverse-CDF choice."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def uniform(seed: int, *parts: str) -> float:
    """Deterministic uniform in (0, 1] from a seed and string parts."""
    h = hashlib.blake2b("|".join((str(seed), *parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(h, "big") + 1) / 2.0**64


def sample_index(probs: Sequence[float], u: float) -> int:
    """Inverse-CDF draw: the first index whose cumulative probability reaches ``u`` (zeros skipped)."""
    acc = 0.0
    last = max(i for i, p in enumerate(probs) if p > 0)
    for i, p in enumerate(probs):
        acc += p
        if p > 0 and acc >= u:
            return i
    return last
