"""Coverage-gap analysis: the uncovered lines a QE agent names vs those coverage.py reports.

The agent's report names gaps as ``"file.py:12"`` / ``"file.py:12-15"`` strings or a mapping
``{"file.py": [12, "14-15"]}`` (paths relative to the code's parent folder, as coverage reports
them). The reference is coverage.py's ``missing_lines`` when the existing tests run against the
code in the sandbox. Named lines that are not executable statements (blank lines, comments,
docstrings inside a named range) are ignored and counted in ``details.ignored_non_statements``;
the score is F-beta over ``(file, line)`` pairs (:class:`~router_rl.judge.config.RetrievalConfig`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from router_rl.judge.config import JudgeConfig, RetrievalConfig
from router_rl.judge.coverage_report import CoverageSummary, summarize
from router_rl.judge.retrieval import set_score
from router_rl.judge.sandbox import run_pytest
from router_rl.judge.score import Judgement

_SPEC = re.compile(r"^(?P<file>[^:]+):(?P<a>\d+)(?:-(?P<b>\d+))?$")
_RANGE = re.compile(r"^(?P<a>\d+)(?:-(?P<b>\d+))?$")


class GapReportError(ValueError):
    """The agent's gap report is malformed (the message names the entry)."""


def _lines(a: str, b: str | None, where: str) -> range:
    lo, hi = int(a), int(b) if b is not None else int(a)
    if lo < 1 or hi < lo:
        raise GapReportError(f"{where}: expected a line or an increasing range of lines >= 1")
    return range(lo, hi + 1)


def parse_gaps(report: Any) -> dict[str, set[int]]:
    """Parse an agent's gap report into ``{file: {line, ...}}``.

    Raises:
        GapReportError: Naming the malformed entry.
    """
    out: dict[str, set[int]] = {}
    if isinstance(report, list):
        for i, entry in enumerate(report):
            m = _SPEC.match(str(entry).strip()) if isinstance(entry, str) else None
            if m is None:
                raise GapReportError(f"gaps[{i}]: expected 'file.py:LINE' or 'file.py:A-B', got {entry!r}")
            out.setdefault(m["file"], set()).update(_lines(m["a"], m["b"], f"gaps[{i}]"))
        return out
    if isinstance(report, dict):
        for file, entries in report.items():
            if not isinstance(entries, list):
                raise GapReportError(f"gaps[{file!r}]: expected a list of lines or 'A-B' ranges")
            for j, e in enumerate(entries):
                where = f"gaps[{file!r}][{j}]"
                if isinstance(e, int) and not isinstance(e, bool):
                    out.setdefault(str(file), set()).update(_lines(str(e), None, where))
                    continue
                m = _RANGE.match(str(e).strip()) if isinstance(e, str) else None
                if m is None:
                    raise GapReportError(f"{where}: expected a line number or 'A-B', got {e!r}")
                out.setdefault(str(file), set()).update(_lines(m["a"], m["b"], where))
        return out
    raise GapReportError("gaps: expected a list of 'file.py:A-B' strings or a mapping file -> lines")


def score_gaps(named: dict[str, set[int]], cov: CoverageSummary, config: RetrievalConfig | None = None) -> Judgement:
    """Score named gaps against a coverage summary (no test run)."""
    cfg = config or RetrievalConfig()
    statements = {
        f: set(cov.executed_lines.get(f, [])) | set(cov.missing_lines.get(f, []))
        for f in set(cov.executed_lines) | set(cov.missing_lines)
    }
    truth = {(f, ln) for f, lines in cov.missing_lines.items() for ln in lines}
    named_pairs = {(f, ln) for f, lines in named.items() for ln in lines}
    kept = {(f, ln) for f, ln in named_pairs if ln in statements.get(f, set())}
    s = set_score(kept, truth, beta=cfg.beta)
    details = {
        **s.to_dict(),
        "reported_missing_lines": len(truth),
        "named_lines": len(named_pairs),
        "ignored_non_statements": len(named_pairs - kept),
        "unknown_files": sorted(set(named) - set(statements)),
        "false_positives": sorted(f"{f}:{ln}" for f, ln in kept - truth)[:50],
        "missed": sorted(f"{f}:{ln}" for f, ln in truth - kept)[:50],
    }
    return Judgement("coverage-gaps", round(s.f_beta, 6), details)


def judge_gaps(
    code: str | Path,
    tests: str | Path,
    gaps: Any,
    config: JudgeConfig | None = None,
    retrieval: RetrievalConfig | None = None,
) -> Judgement:
    """Run ``tests`` against ``code`` with coverage in the sandbox and score the named ``gaps``.

    Raises:
        GapReportError: When the gap report is malformed.
        ValueError: When the run produced no coverage report (the message says why).
    """
    named = parse_gaps(gaps)
    cfg = config or JudgeConfig()
    run = run_pytest(Path(code), Path(tests), cfg.limits, coverage=True)
    if run.coverage is None:
        raise ValueError(f"no coverage report from the test run: {run.coverage_error}")
    j = score_gaps(named, summarize(run.coverage), retrieval)
    return Judgement("coverage-gaps", j.score, {**j.details, "tests": {"collected": len(run.outcomes),
                                                                       "passed": run.count("passed")}})
