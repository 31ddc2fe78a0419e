"""Mutation score: run the passing tests against each mutant of the code under test, in parallel.

A mutant is *killed* when a test that passed on the original code fails, errors or times out on
it (including a mutant that breaks the import). Mutants on lines the tests never execute cannot
be killed and are counted as survived without a run (``not_covered``). The run is parallel and
bounded: at most ``max_mutants`` (a seeded sample, :class:`numpy.random.Generator`), run by one
sandboxed pool (:func:`~router_rl.judge.sandbox.run_mutants`) that forks ``workers`` children at a
time, ``per_mutant_timeout_s`` each, and no new mutant after ``total_budget_s`` (those are
``skipped_budget`` and, like ``error``, left out of the score).

``score = (killed + timeout) / (killed + timeout + survived + not_covered)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.judge.config import MutationBudget, SandboxLimits
from router_rl.judge.coverage_report import CoverageSummary
from router_rl.judge.mutants import Site, apply_mutation, code_files, mutation_sites
from router_rl.judge.sandbox import SandboxError, run_mutants

KILLED_STATUSES = ("killed", "timeout")


@dataclass(frozen=True)
class MutantResult:
    """Outcome of one mutant.

    Attributes:
        file: Mutated file (relative to the code's parent folder).
        site: The mutated site.
        status: ``killed``, ``timeout`` (killed by the time limit), ``survived``, ``not_covered``
            (on a line no test executes; survived without a run), ``skipped_budget`` or ``error``
            (the sandbox failed; left out of the score).
        wall_s: Seconds of the run (0 when there was none).
    """

    file: str
    site: Site
    status: str
    wall_s: float = 0.0


@dataclass
class MutationReport:
    """All mutants' outcomes.

    Attributes:
        sites_total: Mutation sites in the code under test (before sampling).
        results: One entry per sampled mutant.
        reason: Why no mutant ran, when none did.
        wall_s: Seconds of the whole mutation run.
    """

    sites_total: int
    results: list[MutantResult] = field(default_factory=list)
    reason: str | None = None
    wall_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Number of mutants per status."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def score(self) -> float:
        """Share of scored mutants that were killed (0 when none was scored)."""
        c = self.counts()
        killed = sum(c.get(s, 0) for s in KILLED_STATUSES)
        scored = killed + c.get("survived", 0) + c.get("not_covered", 0)
        return killed / scored if scored else 0.0

    def to_dict(self, *, max_survivors: int = 20) -> dict[str, Any]:
        """JSON-ready summary with the first surviving mutants."""
        survivors = [
            {"file": r.file, "line": r.site.line, "operator": r.site.operator, "change": r.site.description,
             "status": r.status}
            for r in self.results
            if r.status in ("survived", "not_covered")
        ]
        return {
            "score": round(self.score, 6),
            "sites_total": self.sites_total,
            "sampled": len(self.results),
            "counts": self.counts(),
            "reason": self.reason,
            "wall_s": round(self.wall_s, 3),
            "survivors": survivors[:max_survivors],
        }


def _covered(cov: CoverageSummary | None, rel: str, line: int) -> bool:
    if cov is None:
        return True
    executed = cov.executed_lines.get(rel)
    if executed is None:
        return True
    return line in set(executed)


def run_mutation(
    code: Path,
    tests: Path,
    passing: list[str],
    budget: MutationBudget,
    limits: SandboxLimits,
    *,
    coverage: CoverageSummary | None = None,
) -> MutationReport:
    """Run the mutation analysis of ``tests`` on ``code``.

    Args:
        code: Module or package folder under test.
        tests: The test file.
        passing: Node ids of the tests that passed on the original code (only these run).
        budget: Mutant sample size, parallelism and time budget.
        limits: Sandbox limits (the wall-clock limit becomes ``per_mutant_timeout_s``).
        coverage: Coverage of the original run, to skip mutants on never-executed lines.

    Returns:
        The :class:`MutationReport`.
    """
    t0 = time.monotonic()
    sources = code_files(code)
    sites = [(rel, site) for rel, src in sources.items() for site in mutation_sites(src, budget.operators)]
    report = MutationReport(sites_total=len(sites))
    if not sites:
        report.reason = "the code under test has no mutation site"
        return report
    if not passing:
        report.reason = "no test passed on the original code"
        report.results = []
        return report
    rng = np.random.default_rng(budget.seed)
    if len(sites) > budget.max_mutants:
        pick = sorted(rng.choice(len(sites), size=budget.max_mutants, replace=False).tolist())
        sites = [sites[i] for i in pick]
    todo: list[int] = []
    results: list[MutantResult | None] = [None] * len(sites)
    for i, (rel, site) in enumerate(sites):
        if _covered(coverage, rel, site.stmt_line):
            todo.append(i)
        else:
            results[i] = MutantResult(rel, site, "not_covered")
    if todo:
        mutants = [
            {sites[i][0]: apply_mutation(sources[sites[i][0]], sites[i][1].index, budget.operators)} for i in todo
        ]
        try:
            runs = run_mutants(
                code, tests, mutants, passing, limits,
                workers=budget.workers,
                per_mutant_timeout_s=budget.per_mutant_timeout_s,
                total_budget_s=max(0.0, budget.total_budget_s - (time.monotonic() - t0)),
            )
            for k, i in enumerate(todo):
                results[i] = MutantResult(sites[i][0], sites[i][1], runs.status[k], runs.wall_s[k])
        except (SandboxError, OSError) as e:
            report.reason = f"the mutant pool failed: {type(e).__name__}: {e}"
            for i in todo:
                results[i] = MutantResult(sites[i][0], sites[i][1], "error")
    report.results = [r for r in results if r is not None]
    report.wall_s = time.monotonic() - t0
    return report
