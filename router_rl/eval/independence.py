"""The fleet's independence gates: pass/fail with numbers, per phase.

* **Phase 1**: >= 40% of requests on local models, >= 90% of the reference quality, >= 50% cost
  saving vs the reference model.
* **Phase 2**: >= 80% local, >= 95% quality, >= 60% cost reduction, and where latency is known
  P50 < 2 s for SIMPLE tasks and P95 < 5 s for COMPLEX tasks (``COMPLEX`` and ``VERY_COMPLEX``),
  as the fleet plan states them. Without a complexity label the overall P50 / P95 stand in,
  labelled ``latency_p50_all`` / ``latency_p95_all`` (never silently).
* **Phase 4**: >= 99% local, < 1% of requests on cloud models and >= 95% of the reference quality.

A phase passes only when every earlier phase's quality and cost gates pass too: those are copied
into it as ``<phase>.<metric>`` checks, so a router at 3% quality is never labelled ``phase4``.
Thresholds live in :class:`IndependenceConfig` (validated on construction); a check whose input
is unknown (no catalog -> no locality, no latency) is reported as *skipped*, never as passed.
A phase passes when every non-skipped check passes and at least one check ran;
:attr:`PhaseResult.binding` names the check that decides it (the worst failing one, else the one
with the least slack).
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
        max_latency_p50: Maximum median latency of all tasks in seconds (strict ``<``), where known.
        max_latency_p95: Maximum 95th-percentile latency of all tasks (strict ``<``), where known.
        max_latency_p50_simple: Maximum median latency of SIMPLE tasks (strict ``<``).
        max_latency_p95_complex: Maximum 95th-percentile latency of COMPLEX / VERY_COMPLEX tasks.
    """

    min_local_share: Share | None = None
    min_quality_ratio: Annotated[float, Field(gt=0, le=2)] | None = None
    min_cost_saving: Share | None = None
    max_cloud_share: Share | None = None
    max_latency_p50: PositiveFloat | None = None
    max_latency_p95: PositiveFloat | None = None
    max_latency_p50_simple: PositiveFloat | None = None
    max_latency_p95_complex: PositiveFloat | None = None


#: Checks that earlier phases hand on to later ones (a later phase never passes without them).
INHERITED_METRICS: tuple[str, ...] = ("quality_ratio", "cost_saving")


def _default_phases() -> dict[str, PhaseGates]:
    return {
        "phase1": PhaseGates(min_local_share=0.40, min_quality_ratio=0.90, min_cost_saving=0.50),
        "phase2": PhaseGates(
            min_local_share=0.80,
            min_quality_ratio=0.95,
            min_cost_saving=0.60,
            max_latency_p50_simple=2.0,
            max_latency_p95_complex=5.0,
        ),
        "phase4": PhaseGates(min_local_share=0.99, max_cloud_share=0.01, min_quality_ratio=0.95),
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

    @property
    def binding(self) -> GateCheck | None:
        """The check deciding the verdict: the failing one furthest from its threshold (relative),
        else the passing one closest to it; None when every check was skipped."""
        ran = [c for c in self.checks if c.passed is not None and c.value is not None]
        if not ran:
            return None
        failing = [c for c in ran if not c.passed]
        return min(failing or ran, key=_slack)  # the most negative slack, else the smallest

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        b = self.binding
        return {"phase": self.phase, "passed": self.passed, "checks": [asdict(c) for c in self.checks],
                "binding": None if b is None else b.metric}


def _slack(c: GateCheck) -> float:
    """Relative margin of a check (> 0 passes): how far its value is on the right side of the threshold."""
    assert c.value is not None
    scale = max(abs(c.threshold), 1e-12)
    return (c.value - c.threshold) / scale if c.op == ">=" else (c.threshold - c.value) / scale


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
    latency_p50_simple: float | None = None,
    latency_p95_complex: float | None = None,
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
        latency_p50_simple: Median seconds of SIMPLE tasks (None: no complexity label -> the
            overall P50 stands in, labelled ``latency_p50_all``).
        latency_p95_complex: 95th percentile seconds of COMPLEX / VERY_COMPLEX tasks (likewise).
        config: Thresholds (defaults: :class:`IndependenceConfig`).
    """
    cfg = config or IndependenceConfig()
    if cloud_share is None and local_share is not None:
        cloud_share = 1.0 - local_share
    p50s, p50s_name = (latency_p50_simple, "latency_p50_simple") if latency_p50_simple is not None else (
        latency_p50, "latency_p50_all")
    p95c, p95c_name = (latency_p95_complex, "latency_p95_complex") if latency_p95_complex is not None else (
        latency_p95, "latency_p95_all")
    results = []
    inherited: list[GateCheck] = []  # earlier phases' quality / cost checks
    for name, g in cfg.phases.items():
        own = [
            c
            for c in (
                _ge("local_share", g.min_local_share, local_share),
                _ge("quality_ratio", g.min_quality_ratio, quality_ratio),
                _ge("cost_saving", g.min_cost_saving, cost_saving),
                _lt("cloud_share", g.max_cloud_share, cloud_share),
                _lt("latency_p50", g.max_latency_p50, latency_p50),
                _lt("latency_p95", g.max_latency_p95, latency_p95),
                _lt(p50s_name, g.max_latency_p50_simple, p50s),
                _lt(p95c_name, g.max_latency_p95_complex, p95c),
            )
            if c is not None
        ]
        checks = own + inherited
        ran = [c.passed for c in checks if c.passed is not None]
        results.append(PhaseResult(name, checks, all(ran) if ran else None))
        inherited = inherited + [
            GateCheck(f"{name}.{c.metric}", c.op, c.threshold, c.value, c.passed)
            for c in own if c.metric in INHERITED_METRICS
        ]
    return IndependenceReport(results)
