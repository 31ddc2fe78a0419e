"""Precision, recall and F-beta of a named set against a labelled set (flaky tests, coverage gaps)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SetScore:
    """Agreement of a named set with the labelled set.

    Attributes:
        tp: Named and labelled.
        fp: Named, not labelled.
        fn: Labelled, not named.
        beta: F-beta's beta.
    """

    tp: int
    fp: int
    fn: int
    beta: float = 1.0

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; 1.0 when nothing was named."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; 1.0 when nothing is labelled."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f_beta(self) -> float:
        """F-beta; 1.0 when both sets are empty, 0 when exactly one is."""
        if self.tp + self.fp + self.fn == 0:
            return 1.0
        p, r, b2 = self.precision, self.recall, self.beta**2
        return (1 + b2) * p * r / (b2 * p + r) if (p + r) > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready counts and rates."""
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "beta": self.beta,
            "precision": round(self.precision, 6), "recall": round(self.recall, 6), "f_beta": round(self.f_beta, 6),
        }  # fmt: skip


def set_score(named: Iterable[Hashable], labelled: Iterable[Hashable], *, beta: float = 1.0) -> SetScore:
    """Score ``named`` against ``labelled`` (duplicates are ignored)."""
    n, lab = set(named), set(labelled)
    return SetScore(tp=len(n & lab), fp=len(n - lab), fn=len(lab - n), beta=beta)
