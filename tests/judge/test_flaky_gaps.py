"""Flaky-test classification and coverage-gap analysis: precision/recall against labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_rl.judge.config import RetrievalConfig
from router_rl.judge.coverage_report import CoverageSummary
from router_rl.judge.flaky import HistoryError, judge_flaky, load_history, parse_history
from router_rl.judge.gaps import GapReportError, judge_gaps, parse_gaps, score_gaps
from router_rl.judge.retrieval import set_score


def _runs(rows: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [{"test": t, "commit": c, "outcome": o} for t, c, o in rows]


HISTORY = _runs(
    [
        ("t::a", "c1", "passed"), ("t::a", "c1", "failed"),  # flaky
        ("t::b", "c1", "passed"), ("t::b", "c2", "failed"),  # broke on c2: not flaky
        ("t::c", "c1", "failed"), ("t::c", "c1", "passed"), ("t::c", "c2", "passed"),  # flaky
        ("t::d", "c1", "passed"), ("t::d", "c2", "passed"),
    ]
)  # fmt: skip


def test_set_score_numbers() -> None:
    s = set_score({1, 2, 3}, {2, 3, 4, 5})
    assert (s.tp, s.fp, s.fn) == (2, 1, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(0.5)
    assert s.f_beta == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert set_score([], []).f_beta == 1.0 and set_score([1], []).f_beta == 0.0 and set_score([], [1]).f_beta == 0.0
    f2 = set_score({1, 2, 3}, {2, 3, 4, 5}, beta=2.0).f_beta
    assert f2 == pytest.approx(5 * (2 / 3) * 0.5 / (4 * (2 / 3) + 0.5))


def test_flaky_derived_labels_and_score(tmp_path: Path) -> None:
    p = tmp_path / "history.json"
    p.write_text(json.dumps({"runs": HISTORY}))
    h = load_history(p)
    assert h.flaky == {"t::a", "t::c"} and h.label_source == "derived"
    perfect = judge_flaky(["t::a", "t::c"], h)
    assert perfect.score == 1.0 and perfect.source == "judge:flaky"
    j = judge_flaky(["t::a", "t::b", "t::zzz"], h)
    assert j.details["tp"] == 1 and j.details["fp"] == 2 and j.details["fn"] == 1
    assert j.details["unknown"] == ["t::zzz"] and j.details["missed"] == ["t::c"]
    assert j.score == pytest.approx(round(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), 6))
    assert judge_flaky(["t::a"], h, RetrievalConfig(beta=0.5)).score > judge_flaky(["t::a"], h).score


def test_flaky_explicit_labels_and_errors() -> None:
    h = parse_history({"runs": HISTORY, "labels": {"t::b": True, "t::a": False}})
    assert h.flaky == {"t::b"} and h.label_source == "labels"
    with pytest.raises(HistoryError, match=r"runs\[1\]\.outcome: expected one of"):
        parse_history({"runs": [HISTORY[0], {**HISTORY[1], "outcome": "flaky"}]}, source="h.json")
    with pytest.raises(HistoryError, match=r"h\.json: runs\[0\]\.commit"):
        parse_history({"runs": [{"test": "x", "outcome": "passed"}]}, source="h.json")
    with pytest.raises(HistoryError, match="has no run"):
        parse_history({"runs": HISTORY, "labels": {"t::nope": True}})


def test_parse_gaps_formats() -> None:
    assert parse_gaps(["m.py:3", "m.py:5-7", "p/q.py:1"]) == {"m.py": {3, 5, 6, 7}, "p/q.py": {1}}
    assert parse_gaps({"m.py": [3, "5-6"]}) == {"m.py": {3, 5, 6}}
    cases = ((["m.py"], r"gaps\[0\]"), (["m.py:7-5"], r"gaps\[0\]"), ({"m.py": ["x"]}, r"gaps\['m.py'\]\[0\]"))
    for bad, where in cases:
        with pytest.raises(GapReportError, match=where):
            parse_gaps(bad)


def test_score_gaps_ignores_non_statements() -> None:
    cov = CoverageSummary(
        statements=6, covered_lines=3, branches=0, covered_branches=0,
        missing_lines={"m.py": [5, 6, 9]}, executed_lines={"m.py": [1, 2, 3]},
    )  # fmt: skip
    j = score_gaps({"m.py": {4, 5, 6, 7, 8}, "other.py": {1}}, cov)  # 4, 7, 8 are not statements
    assert j.details["tp"] == 2 and j.details["fp"] == 0 and j.details["fn"] == 1
    assert j.details["ignored_non_statements"] == 4 and j.details["unknown_files"] == ["other.py"]
    assert j.score == pytest.approx(0.8)


@pytest.mark.skipif(__import__("os").getuid() != 0, reason="sandbox needs root")
def test_judge_gaps_against_real_coverage(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    partial = tests.with_name("test_partial.py")
    partial.write_text("from tiny import clamp\n\ndef test_mid():\n    assert clamp(5, 0, 10) == 5\n")
    # clamp's early returns (lines 7, 9) and the bodies of is_even (14) and total (18-21) are
    # missed; line 17 (`def total`) runs at import and is a named non-gap inside the range
    right = judge_gaps(code, partial, ["tiny.py:7", "tiny.py:9", "tiny.py:14", "tiny.py:17-21"])
    assert right.details["fp"] == 1 and right.details["fn"] == 0, right.details
    assert right.score == pytest.approx(2 * 0.875 / 1.875, abs=1e-6)
    exact = judge_gaps(code, partial, {"tiny.py": [7, 9, 14, "18-21"]})
    assert exact.score == 1.0
    half = judge_gaps(code, partial, ["tiny.py:7", "tiny.py:9", "tiny.py:10"])
    assert half.details["tp"] == 2 and half.details["fp"] == 1 and half.score < 0.6
