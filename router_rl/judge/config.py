"""Strict configuration of the judge: score weights, sandbox limits and the mutation budget.

Every model is frozen and rejects unknown fields; values are validated on construction, so a bad
setting fails before any test runs (the :class:`~router_rl.core.errors.ConfigError` names it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router_rl.core.errors import ConfigError

MUTATION_OPERATORS: tuple[str, ...] = ("comparison", "arithmetic", "boolean", "constant", "return")
"""Mutation operators of :mod:`router_rl.judge.mutants`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoreWeights(_Strict):
    """Weights of the test-file score (see :func:`router_rl.judge.score.score_tests`).

    ``score = sum_k w_k * c_k / sum_k w_k`` over the components that were measured, where every
    component ``c_k`` is in ``[0, 1]``:

    * ``pass_rate``: share of collected tests that passed (hung or never-run tests count failed);
    * ``line_coverage`` / ``branch_coverage``: coverage.py's line and branch coverage of the code
      under test;
    * ``mutation``: share of mutants killed by the tests that passed on the original code;
    * ``assertions``: share of test functions that check something (an ``assert``, a
      ``pytest.raises``/``warns``/``fail`` or a ``self.assert*`` call) and are not empty.

    When mutation testing is switched off its weight is left out and the others renormalised
    (``details.weights_used`` says so). A test file that is not valid Python, collects no test or
    whose run produced no result scores 0.

    Attributes:
        pass_rate: Weight of the pass rate.
        line_coverage: Weight of line coverage.
        branch_coverage: Weight of branch coverage.
        mutation: Weight of the mutation score.
        assertions: Weight of the share of asserting, non-empty tests.
    """

    pass_rate: float = Field(default=0.25, ge=0.0)
    line_coverage: float = Field(default=0.15, ge=0.0)
    branch_coverage: float = Field(default=0.10, ge=0.0)
    mutation: float = Field(default=0.35, ge=0.0)
    assertions: float = Field(default=0.15, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> ScoreWeights:
        values = self.model_dump()
        for name, v in values.items():
            if not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite weight >= 0, got {v!r}")
        if sum(values.values()) <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class SandboxLimits(_Strict):
    """Resource limits of one sandboxed pytest run.

    Attributes:
        wall_timeout_s: Wall-clock limit of the whole run; on expiry every process of the run is
            killed and the tests that did not report count as failed.
        per_test_timeout_s: pytest-timeout's per-test limit (a hanging test fails, the run goes on).
        cpu_s: ``RLIMIT_CPU`` of every process (seconds of CPU).
        memory_mb: ``RLIMIT_AS`` of every process (MiB of address space).
        max_processes: ``RLIMIT_NPROC`` of the sandbox's private uid (processes and threads).
        max_file_mb: ``RLIMIT_FSIZE`` (largest file a test may write, MiB).
        isolate_network: Run in a fresh network namespace (no interface but a down loopback).
    """

    wall_timeout_s: float = Field(default=60.0, gt=0.0)
    per_test_timeout_s: float = Field(default=5.0, gt=0.0)
    cpu_s: int = Field(default=60, ge=1)
    memory_mb: int = Field(default=1024, ge=256)
    max_processes: int = Field(default=32, ge=4)
    max_file_mb: int = Field(default=64, ge=1)
    isolate_network: bool = True

    @model_validator(mode="after")
    def _check(self) -> SandboxLimits:
        for name in ("wall_timeout_s", "per_test_timeout_s"):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number of seconds, got {v!r}")
        if self.per_test_timeout_s > self.wall_timeout_s:
            raise ValueError(
                f"per_test_timeout_s ({self.per_test_timeout_s}) must not exceed wall_timeout_s "
                f"({self.wall_timeout_s})"
            )
        return self


class MutationBudget(_Strict):
    """Budget of the mutation run.

    Attributes:
        enabled: Run mutation testing at all.
        max_mutants: At most this many mutants are run (a seeded sample when there are more).
        workers: Mutants judged in parallel (one sandboxed pytest process each).
        per_mutant_timeout_s: Wall-clock limit of one mutant's run; a timeout counts as killed.
        total_budget_s: Stop starting new mutants after this many seconds (the rest are reported
            as ``skipped_budget`` and left out of the score's denominator).
        operators: Mutation operators to use (see :data:`MUTATION_OPERATORS`).
        seed: Seed of the mutant sample.
    """

    enabled: bool = True
    max_mutants: int = Field(default=40, ge=1)
    workers: int = Field(default=2, ge=1)
    per_mutant_timeout_s: float = Field(default=20.0, gt=0.0)
    total_budget_s: float = Field(default=300.0, gt=0.0)
    operators: tuple[str, ...] = MUTATION_OPERATORS
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> MutationBudget:
        unknown = [o for o in self.operators if o not in MUTATION_OPERATORS]
        if unknown or not self.operators:
            raise ValueError(
                f"operators: expected a non-empty subset of {list(MUTATION_OPERATORS)}, got {list(self.operators)}"
            )
        return self


class JudgeConfig(_Strict):
    """Everything the test-file judge needs.

    Attributes:
        weights: Score weights.
        limits: Sandbox limits of the run on the original code.
        mutation: Mutation budget.
    """

    weights: ScoreWeights = ScoreWeights()
    limits: SandboxLimits = SandboxLimits()
    mutation: MutationBudget = MutationBudget()

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> JudgeConfig:
        """Validate a plain mapping; errors name the offending field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            raise ConfigError(loc, err["msg"], source=source) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> JudgeConfig:
        """Load and validate a YAML file."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError("<file>", f"cannot read YAML: {e}", source=str(p)) from None
        if not isinstance(data, dict):
            raise ConfigError("<root>", "expected a mapping", source=str(p))
        return cls.from_dict(data, source=str(p))


class RetrievalConfig(_Strict):
    """Scoring of the QE kinds that name a set (flaky tests, coverage gaps).

    ``score = F_beta = (1 + beta^2) * P * R / (beta^2 * P + R)`` with precision ``P`` and recall
    ``R`` of the named set against the labelled one (1.0 when both sets are empty, 0 when exactly
    one is).

    Attributes:
        beta: Weight of recall relative to precision (1 = F1).
    """

    beta: float = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> RetrievalConfig:
        if not math.isfinite(self.beta):
            raise ValueError(f"beta: expected a finite number > 0, got {self.beta!r}")
        return self
