"""Line and branch coverage of the code under test, from coverage.py's JSON report.

The sandbox measures coverage with coverage.py's API (``Coverage(branch=True, source=[code])``
and ``json_report``); this module turns that report into a :class:`CoverageSummary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CoverageSummary:
    """Coverage of the code under test.

    Attributes:
        statements: Executable statements.
        covered_lines: Statements executed by the tests.
        branches: Branch arcs.
        covered_branches: Branch arcs taken.
        missing_lines: ``{file: [line, ...]}`` statements never executed.
        missing_branches: ``{file: [[from, to], ...]}`` arcs never taken (``to < 0``: exit).
        executed_lines: ``{file: [line, ...]}`` statements executed.
    """

    statements: int
    covered_lines: int
    branches: int
    covered_branches: int
    missing_lines: dict[str, list[int]] = field(default_factory=dict)
    missing_branches: dict[str, list[list[int]]] = field(default_factory=dict)
    executed_lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def line_rate(self) -> float:
        """Share of statements executed (1.0 when there is none)."""
        return self.covered_lines / self.statements if self.statements else 1.0

    @property
    def branch_rate(self) -> float:
        """Share of branch arcs taken (1.0 when there is none)."""
        return self.covered_branches / self.branches if self.branches else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (rates, counts and the missing lines per file)."""
        return {
            "line_rate": round(self.line_rate, 6),
            "branch_rate": round(self.branch_rate, 6),
            "statements": self.statements,
            "covered_lines": self.covered_lines,
            "branches": self.branches,
            "covered_branches": self.covered_branches,
            "missing_lines": self.missing_lines,
        }


def summarize(report: dict[str, Any]) -> CoverageSummary:
    """Build a :class:`CoverageSummary` from coverage.py's JSON report.

    Raises:
        ValueError: When the report lacks the ``totals`` coverage.py writes.
    """
    totals = report.get("totals")
    if not isinstance(totals, dict):
        raise ValueError("coverage report: missing 'totals'")
    files = report.get("files", {}) or {}
    return CoverageSummary(
        statements=int(totals.get("num_statements", 0)),
        covered_lines=int(totals.get("covered_lines", 0)),
        branches=int(totals.get("num_branches", 0)),
        covered_branches=int(totals.get("covered_branches", 0)),
        missing_lines={k: [int(x) for x in v.get("missing_lines", [])] for k, v in files.items()},
        missing_branches={
            k: [[int(a), int(b)] for a, b in v.get("missing_branches", [])] for k, v in files.items()
        },
        executed_lines={k: [int(x) for x in v.get("executed_lines", [])] for k, v in files.items()},
    )


def uncovered(code_files: dict[str, int]) -> CoverageSummary:
    """Zero coverage over files with the given statement counts (when the run gave no report)."""
    return CoverageSummary(statements=sum(code_files.values()), covered_lines=0, branches=0, covered_branches=0)
