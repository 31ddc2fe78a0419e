"""The QE fleet's task-complexity heuristic, as a standalone function and a vectorised batch form.

Used by the feature encoder (``cx:*`` features), the rule-router baseline and the live router.

Scoring table (points add up; see ``docs/features.md``):

============================  ==========================================  ======
signal                        condition                                   points
============================  ==========================================  ======
content length                > 2,000 chars                               +1
                              > 5,000 chars (instead of +1)               +2
requested output              ``max_tokens`` > 2,000                      +1
                              ``max_tokens`` > 4,000 (instead of +1)      +2
conversation                  ``n_messages`` > 5                          +1
                              ``n_messages`` > 10 (instead of +1)         +2
code present                  a ```` ``` ```` fence or >= 2 code lines    +1
complexity keywords           +2 per matched keyword group, at most       +4
============================  ==========================================  ======

Levels: score 0-1 ``SIMPLE``, 2-3 ``MODERATE``, 4-5 ``COMPLEX``, >= 6 ``VERY_COMPLEX``
(maximum possible score: 11).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Final

import numpy as np

from router_rl.features.text_stats import prompt_stats


class Complexity(StrEnum):
    """Complexity level of a task, in increasing order."""

    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"
    VERY_COMPLEX = "very_complex"

    @property
    def rank(self) -> int:
        """0 for SIMPLE ... 3 for VERY_COMPLEX."""
        return _LEVELS.index(self)


_LEVELS: Final = (Complexity.SIMPLE, Complexity.MODERATE, Complexity.COMPLEX, Complexity.VERY_COMPLEX)
#: Level names in increasing order: the one definition (policies and the router read it).
COMPLEXITY_LEVELS: Final[tuple[str, ...]] = tuple(lv.value for lv in _LEVELS)

#: Keyword groups; a group scores once when any of its substrings occurs in the lower-cased prompt.
COMPLEXITY_KEYWORD_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "architecture": ("architecture", "architectural", "system design", "design pattern"),
    "refactor": ("refactor",),
    "security": ("security audit", "threat model", "penetration test", "vulnerabilit", "cryptograph", "owasp"),
    "concurrency": (
        "race condition",
        "concurrency",
        "concurrent",
        "deadlock",
        "thread-safe",
        "thread safe",
        "multithread",
        "multi-thread",
    ),
    "distributed": ("distributed", "microservice", "consensus", "eventual consistency"),
    "performance": ("performance", "scalability", "load test", "memory leak", "bottleneck"),
    "migration": ("migration", "migrate", "backward compatib"),
    "advanced_testing": ("property-based", "fuzz", "mutation test", "chaos", "end-to-end"),
}

LENGTH_THRESHOLDS: Final = (2_000, 5_000)
MAX_TOKENS_THRESHOLDS: Final = (2_000, 4_000)
MESSAGES_THRESHOLDS: Final = (5, 10)
KEYWORD_POINTS: Final = 2
KEYWORD_CAP: Final = 4
#: Lowest score of MODERATE, COMPLEX, VERY_COMPLEX.
LEVEL_CUTS: Final = (2, 4, 6)
MAX_SCORE: Final = 2 + 2 + 2 + 1 + KEYWORD_CAP


def keyword_group_counts(lowered: Sequence[str]) -> np.ndarray:
    """Number of distinct complexity keyword groups present in each lower-cased text."""
    n = len(lowered)
    out = np.zeros(n, dtype=np.int64)
    for subs in COMPLEXITY_KEYWORD_GROUPS.values():
        hit = np.zeros(n, dtype=bool)
        for s in subs:
            hit |= np.fromiter((s in t for t in lowered), dtype=bool, count=n)
        out += hit
    return out


def keyword_groups_one(lowered: str) -> int:
    """:func:`keyword_group_counts` of one lower-cased text."""
    return sum(any(s in lowered for s in subs) for subs in COMPLEXITY_KEYWORD_GROUPS.values())


def complexity_one(
    chars: int, max_tokens: float, n_messages: int, has_code: bool, keyword_groups: int
) -> tuple[int, int]:
    """:func:`complexity_from_stats` for one task, on Python scalars (``max_tokens`` NaN = unknown).

    Returns:
        ``(score, level index)``.
    """
    mt = 0.0 if math.isnan(max_tokens) else max_tokens

    def two_step(x: float, thresholds: tuple[int, int]) -> int:
        return 2 if x > thresholds[1] else (1 if x > thresholds[0] else 0)

    score = (
        two_step(chars, LENGTH_THRESHOLDS)
        + two_step(mt, MAX_TOKENS_THRESHOLDS)
        + two_step(n_messages, MESSAGES_THRESHOLDS)
        + int(has_code)
        + min(keyword_groups * KEYWORD_POINTS, KEYWORD_CAP)
    )
    return score, bisect.bisect_right(LEVEL_CUTS, score)


def _two_step(x: np.ndarray, thresholds: tuple[int, int]) -> np.ndarray:
    lo, hi = thresholds
    return np.where(x > hi, 2, np.where(x > lo, 1, 0))


def complexity_from_stats(
    chars: np.ndarray,
    max_tokens: np.ndarray,
    n_messages: np.ndarray,
    has_code: np.ndarray,
    keyword_groups: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised scoring table.

    Args:
        chars: ``(n,)`` prompt length in characters.
        max_tokens: ``(n,)`` requested output tokens; NaN or <= 0 when unknown (scores 0).
        n_messages: ``(n,)`` number of chat messages.
        has_code: ``(n,)`` bool.
        keyword_groups: ``(n,)`` number of matched keyword groups.

    Returns:
        ``(scores, levels)``: int64 scores and int64 level indices (0 = SIMPLE ... 3 = VERY_COMPLEX).
    """
    mt = np.nan_to_num(np.asarray(max_tokens, dtype=np.float64), nan=0.0)
    score = (
        _two_step(np.asarray(chars), LENGTH_THRESHOLDS)
        + _two_step(mt, MAX_TOKENS_THRESHOLDS)
        + _two_step(np.asarray(n_messages), MESSAGES_THRESHOLDS)
        + np.asarray(has_code, dtype=np.int64)
        + np.minimum(np.asarray(keyword_groups, dtype=np.int64) * KEYWORD_POINTS, KEYWORD_CAP)
    ).astype(np.int64)
    levels = np.searchsorted(np.asarray(LEVEL_CUTS), score, side="right").astype(np.int64)
    return score, levels


def has_code_from_stats(code_fences: np.ndarray, code_lines: np.ndarray) -> np.ndarray:
    """Code present: a ``` fence or at least two code-looking lines."""
    return (np.asarray(code_fences) > 0) | (np.asarray(code_lines) >= 2)


def complexity_scores(
    prompts: Sequence[str | None],
    *,
    max_tokens: Sequence[float | int | None] | np.ndarray | None = None,
    n_messages: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, list[Complexity]]:
    """Batch form of :func:`complexity_score`.

    Args:
        prompts: Prompt texts (``None`` counts as empty).
        max_tokens: Per-prompt requested output tokens (``None`` = unknown).
        n_messages: Per-prompt message counts (default 1 each).

    Returns:
        ``(scores, levels)``: ``(n,)`` int64 scores and the list of levels.
    """
    lowered = [(p or "").lower() for p in prompts]
    n = len(lowered)
    stats = prompt_stats(lowered)
    mt = (
        np.full(n, np.nan)
        if max_tokens is None
        else np.array([np.nan if v is None else float(v) for v in max_tokens], dtype=np.float64)
    )
    nm = np.ones(n, dtype=np.int64) if n_messages is None else np.asarray(n_messages, dtype=np.int64)
    if mt.shape != (n,) or nm.shape != (n,):
        raise ValueError(f"complexity_scores: max_tokens/n_messages must have {n} entries like prompts")
    score, lv = complexity_from_stats(
        stats["chars"],
        mt,
        nm,
        has_code_from_stats(stats["code_fences"], stats["code_lines"]),
        keyword_group_counts(lowered),
    )
    return score, [_LEVELS[i] for i in lv]


def complexity_score(
    prompt: str | None, *, max_tokens: int | None = None, n_messages: int = 1
) -> tuple[int, Complexity]:
    """Score one task with the fleet's complexity heuristic (table in the module docstring).

    Args:
        prompt: The prompt text (``None`` counts as empty).
        max_tokens: Requested output tokens, if known.
        n_messages: Number of chat messages in the request.

    Returns:
        ``(score, level)``.

    Example:
        >>> complexity_score("Write a unit test for the getter.")
        (0, <Complexity.SIMPLE: 'simple'>)
    """
    if n_messages < 0:
        raise ValueError(f"complexity_score: n_messages must be >= 0, got {n_messages}")
    scores, levels = complexity_scores([prompt], max_tokens=[max_tokens], n_messages=[n_messages])
    return int(scores[0]), levels[0]
