"""Sliding windows of live evidence about one policy version: feedback quality and decision outcomes.

The canary ramp and the automatic rollback (:mod:`router_rl.router.live_policy`) judge a version
on an *interval*, never on one answer. The interval of a window's mean quality is the 95% Wilson
score interval with the window's mean as the proportion. Feedback quality lies in [0, 1], and a
[0, 1] variable of mean ``p`` has variance at most ``p (1 - p)`` (equality for 0/1 labels), so
the Wilson interval of the mean is the binary one for pass/fail labels and conservative (wider
than needed) for graded ones.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def wilson_interval(mean: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (or a [0, 1] mean) ``mean`` over ``n`` observations.

    Returns ``(0.0, 1.0)`` for ``n == 0``.

    Raises:
        ValueError: ``mean`` outside [0, 1] or ``n`` negative.
    """
    if n < 0:
        raise ValueError(f"n: expected >= 0, got {n}")
    if n == 0:
        return 0.0, 1.0
    if not 0.0 <= mean <= 1.0:
        raise ValueError(f"mean: expected a value in [0, 1], got {mean}")
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (mean + z2 / (2 * n)) / denom
    half = z * math.sqrt(mean * (1.0 - mean) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if mean == 0.0 else max(0.0, centre - half)
    high = 1.0 if mean == 1.0 else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class WindowStats:
    """What a quality window holds now.

    Attributes:
        n: Labels in the window.
        mean: Their mean quality (``None`` when empty).
        low: Lower bound of the 95% Wilson interval.
        high: Upper bound of the 95% Wilson interval.
    """

    n: int
    mean: float | None
    low: float
    high: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly form (admin state, registry records)."""
        return {"n": self.n, "mean": self.mean, "low": self.low, "high": self.high}


class QualityWindow:
    """The last ``size`` feedback qualities of one version, with its 95% interval.

    Args:
        size: Most labels kept (older ones slide out).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: expected >= 1, got {size}")
        self._q: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self.total = 0  # every label ever added (the window keeps the last ``size``)

    def add(self, quality: float) -> None:
        """Add one label (quality in [0, 1]).

        Raises:
            ValueError: quality outside [0, 1].
        """
        if not 0.0 <= quality <= 1.0:
            raise ValueError(f"quality: expected a value in [0, 1], got {quality}")
        if len(self._q) == self._q.maxlen:
            self._sum -= self._q[0]
        self._q.append(float(quality))
        self._sum += float(quality)
        self.total += 1

    def __len__(self) -> int:
        return len(self._q)

    def stats(self) -> WindowStats:
        """Count, mean and 95% Wilson interval of the window."""
        n = len(self._q)
        if n == 0:
            return WindowStats(0, None, 0.0, 1.0)
        mean = min(1.0, max(0.0, self._sum / n))
        low, high = wilson_interval(mean, n)
        return WindowStats(n, mean, low, high)


class OutcomeWindow:
    """The last ``size`` decisions of one version: which ones went wrong (error, policy failure, fallback).

    Args:
        size: Most decisions kept.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: expected >= 1, got {size}")
        self._bad: deque[bool] = deque(maxlen=size)
        self._n_bad = 0
        self.total = 0

    def add(self, bad: bool) -> None:
        """Add one decision's outcome."""
        if len(self._bad) == self._bad.maxlen and self._bad[0]:
            self._n_bad -= 1
        self._bad.append(bool(bad))
        self._n_bad += int(bool(bad))
        self.total += 1

    def __len__(self) -> int:
        return len(self._bad)

    @property
    def bad(self) -> int:
        """Bad decisions in the window."""
        return self._n_bad

    @property
    def ratio(self) -> float:
        """Share of bad decisions in the window (0.0 when empty)."""
        return self._n_bad / len(self._bad) if self._bad else 0.0
