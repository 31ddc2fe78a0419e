"""The complexity heuristic: every row of the documented scoring table."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.features import Complexity, complexity_score, complexity_scores
from router_rl.features.complexity import MAX_SCORE

S, M, C, V = Complexity.SIMPLE, Complexity.MODERATE, Complexity.COMPLEX, Complexity.VERY_COMPLEX
PLAIN = "lorem ipsum dolor sit amet "  # 27 chars, no keyword, no code


def _plain(n_chars: int) -> str:
    return (PLAIN * (n_chars // len(PLAIN) + 1))[:n_chars]


@pytest.mark.parametrize(
    ("prompt", "kwargs", "expected"),
    [
        ("Write a unit test for the getter.", {}, (0, S)),
        (None, {}, (0, S)),
        (_plain(2_000), {}, (0, S)),
        (_plain(2_001), {}, (1, S)),
        (_plain(5_000), {}, (1, S)),
        (_plain(5_001), {}, (2, M)),
        ("hi", {"max_tokens": 2_000}, (0, S)),
        ("hi", {"max_tokens": 2_001}, (1, S)),
        ("hi", {"max_tokens": 4_001}, (2, M)),
        ("hi", {"n_messages": 5}, (0, S)),
        ("hi", {"n_messages": 6}, (1, S)),
        ("hi", {"n_messages": 11}, (2, M)),
        ("fix this\n```python\nx = 1\n```", {}, (1, S)),
        ("def f():\n    return 1", {}, (1, S)),  # two code lines
        ("import os", {}, (0, S)),  # one code line is not enough
        ("Plan a REFACTOR of the module", {}, (2, M)),  # keywords are case-insensitive
        ("refactor and refactoring again", {}, (2, M)),  # one group counts once
        ("security audit of the distributed cache", {}, (4, C)),
        ("refactor the architecture to remove the race condition", {}, (4, C)),  # capped at +4
        (
            _plain(6_000) + " refactor the architecture\n```\nx\n```",
            {"max_tokens": 8_000, "n_messages": 12},
            (MAX_SCORE, V),
        ),
        ("security audit with property-based tests", {"max_tokens": 4_096}, (6, V)),
    ],
)
def test_scoring_table(prompt: str | None, kwargs: dict, expected: tuple[int, Complexity]) -> None:
    assert complexity_score(prompt, **kwargs) == expected


def test_levels_are_ordered_and_batch_matches_single() -> None:
    assert [lv.rank for lv in (S, M, C, V)] == [0, 1, 2, 3]
    prompts = ["hi", _plain(6_000), "refactor the architecture", None]
    mts = [None, 5_000, 100, None]
    nms = [1, 12, 3, 1]
    scores, levels = complexity_scores(prompts, max_tokens=mts, n_messages=nms)
    for i, p in enumerate(prompts):
        assert complexity_score(p, max_tokens=mts[i], n_messages=nms[i]) == (int(scores[i]), levels[i])
    assert scores.dtype == np.int64


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_messages"):
        complexity_score("x", n_messages=-1)
    with pytest.raises(ValueError, match="2 entries"):
        complexity_scores(["a", "b"], max_tokens=[1])
