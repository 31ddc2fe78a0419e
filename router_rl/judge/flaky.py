"""Flaky-test classification: the tests a QE agent calls flaky vs a labelled run history.

History file (JSON)::

    {"runs": [{"test": "tests/test_a.py::test_x", "commit": "abc", "outcome": "passed"}, ...],
     "labels": {"tests/test_a.py::test_x": true, ...}}

``labels`` is optional. Without it a test is labelled flaky when it both passed and failed on
the same commit (the usual operational definition); with it, the labels are used as given and
every labelled test must appear in ``runs``. ``outcome`` is ``passed`` or ``failed``.
The score is F-beta (:class:`~router_rl.judge.config.RetrievalConfig`); a named test that is not
in the history counts as a false positive and is listed under ``details.unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_rl.judge.config import RetrievalConfig
from router_rl.judge.retrieval import set_score
from router_rl.judge.score import Judgement

OUTCOMES = ("passed", "failed")


class HistoryError(ValueError):
    """The labelled history is malformed (the message names the file, row and field)."""


@dataclass(frozen=True)
class TestRun:
    """One recorded run of one test.

    Attributes:
        test: Test node id.
        commit: Code version the run used.
        outcome: ``passed`` or ``failed``.
    """

    __test__ = False

    test: str
    commit: str
    outcome: str


@dataclass(frozen=True)
class FlakyHistory:
    """A labelled history of test runs.

    Attributes:
        runs: The recorded runs.
        flaky: Tests labelled flaky.
        label_source: ``labels`` (given) or ``derived`` (passed and failed on one commit).
    """

    runs: tuple[TestRun, ...]
    flaky: frozenset[str]
    label_source: str

    @property
    def tests(self) -> frozenset[str]:
        """Every test in the history."""
        return frozenset(r.test for r in self.runs)


def derive_flaky(runs: Iterable[TestRun]) -> frozenset[str]:
    """Tests that both passed and failed on the same commit."""
    seen: dict[tuple[str, str], set[str]] = {}
    for r in runs:
        seen.setdefault((r.test, r.commit), set()).add(r.outcome)
    return frozenset(test for (test, _), outs in seen.items() if len(outs) > 1)


def parse_history(data: Any, *, source: str = "<history>") -> FlakyHistory:
    """Validate a history mapping (see the module docstring).

    Raises:
        HistoryError: Naming the source, the row and the field.
    """
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise HistoryError(f"{source}: expected a mapping with a 'runs' list")
    runs = []
    for i, row in enumerate(data["runs"]):
        if not isinstance(row, dict):
            raise HistoryError(f"{source}: runs[{i}]: expected a mapping")
        for key in ("test", "commit", "outcome"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise HistoryError(f"{source}: runs[{i}].{key}: expected a non-empty string")
        if row["outcome"] not in OUTCOMES:
            raise HistoryError(f"{source}: runs[{i}].outcome: expected one of {list(OUTCOMES)}, got {row['outcome']!r}")
        runs.append(TestRun(row["test"], row["commit"], row["outcome"]))
    labels = data.get("labels")
    if labels is None:
        return FlakyHistory(tuple(runs), derive_flaky(runs), "derived")
    if not isinstance(labels, dict):
        raise HistoryError(f"{source}: labels: expected a mapping test -> bool")
    known = {r.test for r in runs}
    for test, flag in labels.items():
        if not isinstance(flag, bool):
            raise HistoryError(f"{source}: labels[{test!r}]: expected true or false, got {flag!r}")
        if test not in known:
            raise HistoryError(f"{source}: labels[{test!r}]: the test has no run in 'runs'")
    return FlakyHistory(tuple(runs), frozenset(t for t, f in labels.items() if f), "labels")


def load_history(path: str | Path) -> FlakyHistory:
    """Read and validate a history JSON file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HistoryError(f"{p}: cannot read JSON ({e})") from None
    return parse_history(data, source=str(p))


def judge_flaky(named: Iterable[str], history: FlakyHistory, config: RetrievalConfig | None = None) -> Judgement:
    """Score the tests an agent calls flaky against the history's labels.

    Returns:
        A :class:`~router_rl.judge.score.Judgement` of kind ``flaky``; score = F-beta.
    """
    cfg = config or RetrievalConfig()
    named_set = set(named)
    s = set_score(named_set, history.flaky, beta=cfg.beta)
    details = {
        **s.to_dict(),
        "label_source": history.label_source,
        "labelled_flaky": len(history.flaky),
        "tests_in_history": len(history.tests),
        "false_positives": sorted(named_set - history.flaky),
        "missed": sorted(history.flaky - named_set),
        "unknown": sorted(named_set - history.tests),
    }
    return Judgement("flaky", round(s.f_beta, 6), details)
