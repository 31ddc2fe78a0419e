"""The mutant pool and the mutation report: statuses, budget, sampling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router_rl.judge.config import MutationBudget, SandboxLimits
from router_rl.judge.mutation import run_mutation
from router_rl.judge.sandbox import run_mutants

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the sandbox needs root")


def test_pool_statuses(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    src = code.read_text()
    mutants = [
        {"tiny.py": src.replace("return n % 2 == 0", "return n % 2 != 0")},  # killed
        {"tiny.py": src.replace("s = 0", "s = 0\n    s += 0")},  # equivalent: survives
        {"tiny.py": src.replace("    for x in xs:", "    while True:\n        pass\n    for x in xs:")},  # hangs
        {"tiny.py": src.replace("def clamp", "def clamp(:")},  # breaks the import: killed
    ]
    targets = ["test_tiny.py::test_is_even", "test_tiny.py::test_total"]
    limits = SandboxLimits(per_test_timeout_s=30.0)
    runs = run_mutants(code, tests, mutants, targets, limits, workers=2, per_mutant_timeout_s=3.0, total_budget_s=60.0)
    assert runs.status == ["killed", "survived", "timeout", "killed"]
    assert runs.wall_s[2] >= 3.0


def test_pool_budget_spent_skips(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    src = code.read_text()
    runs = run_mutants(code, tests, [{"tiny.py": src}] * 3, ["test_tiny.py::test_total"], SandboxLimits(),
                       workers=1, per_mutant_timeout_s=5.0, total_budget_s=0.0)
    assert runs.status == ["skipped_budget"] * 3


def test_run_mutation_samples_with_seed(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    passing = [f"test_tiny.py::{n}" for n in ("test_clamp_low", "test_clamp_high", "test_clamp_edges",
                                               "test_is_even", "test_total")]
    budget = MutationBudget(max_mutants=4, workers=2, seed=3)
    a = run_mutation(code, tests, passing, budget, SandboxLimits())
    b = run_mutation(code, tests, passing, budget, SandboxLimits())
    assert len(a.results) == 4 and a.sites_total > 4
    assert [r.site for r in a.results] == [r.site for r in b.results]
    assert [r.status for r in a.results] == [r.status for r in b.results]
    c = run_mutation(code, tests, [], budget, SandboxLimits())
    assert c.results == [] and c.score == 0.0 and c.reason == "no test passed on the original code"
