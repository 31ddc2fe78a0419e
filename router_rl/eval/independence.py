"""The fleet's independence gates: pass/fail with numbers, per phase.

* **Phase 1**: >= 40% of requests on local models, >= 90% of the reference quality, >= 50% cost
  saving vs the reference model.
* **Phase 2**: >= 80% local, >= 95% quality, >= 60% cost reduction, and where latency is known
  P50 < 2 s and P95 < 5 s.
* **Phase 4**: >= 99% local and < 1% of requests on cloud models.

Thresholds live in :class:`IndependenceConfig` (validated on construction); a check whose input
is unknown (no catalog -> no locality, no latency) is reported as *skipped*, never as passed.
A phase passes when every non-skipped check passes and at least one check ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import Field

from router_rl.core.config import PositiveFloat, StrictConfig

Share = Annotated[float, Field(ge=0, le=1)]


class PhaseGates(StrictConfig):
    """Thresholds of one phase (``None`` = not gated).

    Attributes:
        min_local_share: Minimum share of requests served locally.
        min_quality_ratio: Minimum mean quality / reference quality.
        min_cost_saving: Minimum ``1 - cost / reference cost``.
        max_cloud_share: Maximum share of requests served by cloud models (strict ``<``).
        max_latency_p50: Maximum median latency in seconds (strict ``<``), where known.
        max_latency_p95: Maximum 95th-percentile latency in seconds (strict ``<``), where known.
    """

    min_local_share: Share | None = None
    min_quality_ratio: Annotated[float, Field(gt=0, le=2)] | None = None
    min_cost_saving: Share | None = None
    max_cloud_share: Share | None = None
    max_latency_p50: PositiveFloat | None = None
    max_latency_p95: PositiveFloat | None = None


def _default_phases() -> dict[str, PhaseGates]:
    return {
        "phase1": PhaseGates(min_local_share=0.40, min_quality_ratio=0.90, min_cost_saving=0.50),
        "phase2": PhaseGates(
            min_local_share=0.80,
            min_quality_ratio=0.95,
            min_cost_saving=0.60,
            max_latency_p50=2.0,
            max_latency_p95=5.0,
        ),
        "phase4": PhaseGates(min_local_share=0.99, max_cloud_share=0.01),
    }


class IndependenceConfig(StrictConfig):
    """Phase name -> gates. Defaults are the fleet's published targets (module docstring)."""

    phases: Annotated[dict[str, PhaseGates], Field(min_length=1)] = Field(default_factory=_default_phases)


@dataclass(frozen=True)
class GateCheck:
    """One threshold comparison.

    Attributes:
        metric: Metric name (``local_share``, ``quality_ratio``...).
        op: ``">="`` or ``"<"``.
        threshold: The gate.
        value: The measured number (None: unknown).
        passed: True/False, or None when skipped.
    """

    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool | None


@dataclass(frozen=True)
class PhaseResult:
    """All checks of one phase and the verdict (``passed`` is None when every check was skipped)."""

    phase: str
    checks: list[GateCheck]
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"phase": self.phase, "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


@dataclass(frozen=True)
class IndependenceReport:
    """Per-phase results; ``highest_passed`` is the last phase (in config order) that passed."""

    phases: list[PhaseResult]

    @property
    def highest_passed(self) -> str | None:
        """Name of the highest phase passed, or None."""
        passed = [p.phase for p in self.phases if p.passed]
        return passed[-1] if passed else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stable keys: ``highest_passed``, ``phases``)."""
        return {"highest_passed": self.highest_passed, "phases": [p.to_dict() for p in self.phases]}


def _ge(metric: str, threshold: float | None, value: float | None) -> GateCheck | None:
    if threshold is None:
        return None
    ok = None if value is None or not math.isfinite(value) else value >= threshold - 1e-12
    return GateCheck(metric, ">=", threshold, value, ok)


def _lt(metric: str, threshold: float | None, value: float | None) -> GateCheck | None:
    if threshold is None:
        return None
    ok = None if value is None or not math.isfinite(value) else value < threshold
    return GateCheck(metric, "<", threshold, value, ok)


def independence_report(
    *,
    local_share: float | None,
    quality_ratio: float | None,
    cost_saving: float | None,
    cloud_share: float | None = None,
    latency_p50: float | None = None,
    latency_p95: float | None = None,
    config: IndependenceConfig | None = None,
) -> IndependenceReport:
    """Evaluate every phase's gates on measured numbers.

    Args:
        local_share: Share of requests served by local models (None: unknown).
        quality_ratio: Mean quality / reference quality.
        cost_saving: ``1 - cost share`` vs the reference model.
        cloud_share: Share served by cloud models (default ``1 - local_share``).
        latency_p50: Median seconds where latency is known (None: unknown -> skipped).
        latency_p95: 95th percentile seconds.
        config: Thresholds (defaults: :class:`IndependenceConfig`).
    """
    cfg = config or IndependenceConfig()
    if cloud_share is None and local_share is not None:
        cloud_share = 1.0 - local_share
    results = []
    for name, g in cfg.phases.items():
        checks = [
            c
            for c in (
                _ge("local_share", g.min_local_share, local_share),
                _ge("quality_ratio", g.min_quality_ratio, quality_ratio),
                _ge("cost_saving", g.min_cost_saving, cost_saving),
                _lt("cloud_share", g.max_cloud_share, cloud_share),
                _lt("latency_p50", g.max_latency_p50, latency_p50),
                _lt("latency_p95", g.max_latency_p95, latency_p95),
            )
            if c is not None
        ]
        ran = [c.passed for c in checks if c.passed is not None]
        results.append(PhaseResult(name, checks, all(ran) if ran else None))
    return IndependenceReport(results)
