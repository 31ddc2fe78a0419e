"""Seeding helpers: every random thing in router_rl takes a ``np.random.Generator``."""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a ``np.random.Generator`` for ``seed``.

    Args:
        seed: An integer seed, an existing generator (returned unchanged) or ``None``
            (fresh OS entropy; only for interactive use, never in tests or experiments).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
