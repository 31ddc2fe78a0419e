"""Judge a generated test file: run it in the sandbox, measure coverage and mutants, score it.

Entry point: :func:`judge_tests`. The score's formula is documented on
:class:`~router_rl.judge.config.ScoreWeights`; every zero score says why in ``details.reason``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from router_rl.judge.checks import check_test_source
from router_rl.judge.config import JudgeConfig
from router_rl.judge.coverage_report import CoverageSummary, summarize
from router_rl.judge.mutants import code_files
from router_rl.judge.mutation import run_mutation
from router_rl.judge.sandbox import run_pytest
from router_rl.judge.score import Judgement, combine


class JudgeInputError(ValueError):
    """The code under test or the test file cannot be judged (the message names which and why)."""


def _check_inputs(code: Path, tests: Path) -> str:
    if not code.exists():
        raise JudgeInputError(f"code under test {code}: no such file or folder")
    if code.is_file() and code.suffix != ".py":
        raise JudgeInputError(f"code under test {code}: expected a .py module or a package folder")
    files = code_files(code)
    if not files:
        raise JudgeInputError(f"code under test {code}: the folder holds no .py file")
    for rel, src in files.items():
        try:
            ast.parse(src)
        except SyntaxError as e:
            raise JudgeInputError(f"code under test {rel}: line {e.lineno}: {e.msg}") from None
    if not tests.is_file():
        raise JudgeInputError(f"test file {tests}: no such file")
    try:
        return tests.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise JudgeInputError(f"test file {tests}: cannot read it as text ({e})") from None


def judge_tests(code: str | Path, tests: str | Path, config: JudgeConfig | None = None) -> Judgement:
    """Score a test file against the code under test.

    Args:
        code: The code under test: a ``.py`` module or a package folder.
        tests: The generated pytest file.
        config: Weights, sandbox limits and the mutation budget (defaults when omitted).

    Returns:
        A :class:`~router_rl.judge.score.Judgement` of kind ``tests``.

    Raises:
        JudgeInputError: When the code under test is missing or invalid, or the test file is missing.
        SandboxError: When the sandbox cannot run (e.g. the ``judge`` extra is not installed).
    """
    cfg = config or JudgeConfig()
    code, tests = Path(code), Path(tests)
    text = _check_inputs(code, tests)
    checks = check_test_source(text)
    details: dict[str, Any] = {"checks": checks.to_dict(), "reason": None}
    if not checks.syntax_ok:
        details["reason"] = f"the test file is not valid Python ({checks.syntax_error})"
        return Judgement("tests", 0.0, details)

    run = run_pytest(code, tests, cfg.limits, coverage=True)
    n = len(run.outcomes)
    counts = {o: run.count(o) for o in ("passed", "failed", "error", "skipped", "not_run")}
    details["tests"] = {"collected": n, **counts, "collect_errors": run.collect_errors}
    details["sandbox"] = {
        "isolation": run.isolation,
        "timed_out": run.timed_out,
        "killed_processes": run.killed,
        "exit_code": run.exit_code,
        "wall_s": round(run.wall_s, 3),
    }
    if n == 0:
        why = "collection failed" if run.collect_errors else "no test was collected"
        if run.timed_out:
            why = "the run timed out before any test was collected"
        elif run.exit_code is None:
            why = "the run crashed before any test was collected"
        details["reason"] = why
        return Judgement("tests", 0.0, details)

    cov: CoverageSummary | None = None
    if run.coverage is not None:
        try:
            cov = summarize(run.coverage)
        except ValueError as e:
            details["coverage_error"] = str(e)
    else:
        details["coverage_error"] = run.coverage_error
    details["coverage"] = cov.to_dict() if cov is not None else None

    passing = [nid for nid, o in run.outcomes.items() if o == "passed"]
    mutation_score: float | None = None
    if cfg.mutation.enabled:
        report = run_mutation(code, tests, passing, cfg.mutation, cfg.limits, coverage=cov)
        details["mutation"] = report.to_dict()
        mutation_score = report.score
    else:
        details["mutation"] = None

    components: dict[str, float | None] = {
        "pass_rate": counts["passed"] / n,
        "line_coverage": cov.line_rate if cov is not None else 0.0,
        "branch_coverage": cov.branch_rate if cov is not None else 0.0,
        "mutation": mutation_score,
        "assertions": checks.asserting_rate,
    }
    score, used = combine(components, cfg.weights)
    details["components"] = {k: (round(v, 6) if v is not None else None) for k, v in components.items()}
    details["weights_used"] = used
    if run.timed_out:
        details["reason"] = "the run hit the wall-clock limit; tests that did not report count as failed"
    elif run.exit_code is None:
        details["reason"] = "the run crashed; tests that did not report count as failed"
    return Judgement("tests", round(score, 6), details)
