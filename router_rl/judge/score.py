"""The judge's verdict: a score in ``[0, 1]`` and a JSON ``details`` object.

Test files are scored by :func:`score_tests` (formula in
:class:`~router_rl.judge.config.ScoreWeights`); the other QE kinds build their :class:`Judgement`
in their own modules (:mod:`router_rl.judge.flaky`, :mod:`router_rl.judge.gaps`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from router_rl.judge.config import ScoreWeights

JUDGE_KINDS = ("tests", "flaky", "coverage-gaps")
"""Kinds of judgement; the feedback source is ``judge:<kind>``."""


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict.

    Attributes:
        kind: One of :data:`JUDGE_KINDS`.
        score: Quality in ``[0, 1]``.
        details: JSON-serialisable breakdown (components, counts, reasons).
    """

    kind: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"kind: expected one of {list(JUDGE_KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score: expected a number in [0, 1], got {self.score!r}")

    @property
    def source(self) -> str:
        """Feedback source label, ``judge:<kind>``."""
        return f"judge:{self.kind}"

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "score", "details"}``."""
        return {"kind": self.kind, "score": self.score, "details": self.details}

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)


def combine(components: dict[str, float | None], weights: ScoreWeights) -> tuple[float, dict[str, float]]:
    """Weighted mean of the measured components (``None`` = not measured, weight left out).

    Returns:
        ``(score, weights_used)`` where ``weights_used`` are the renormalised weights.

    Raises:
        ValueError: When a component is outside ``[0, 1]`` or nothing measured has weight.
    """
    w = weights.model_dump()
    used = {k: w[k] for k, v in components.items() if v is not None and w.get(k, 0.0) > 0}
    total = sum(used.values())
    if total <= 0:
        raise ValueError("no measured component has a positive weight")
    score = 0.0
    for k, wk in used.items():
        v = components[k]
        assert v is not None
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"component {k}: expected a value in [0, 1], got {v!r}")
        score += wk * v
    return min(1.0, max(0.0, score / total)), {k: v / total for k, v in used.items()}
