"""The phase gates on live numbers, as the fleet plan states them, with the binding gate per phase.

The base checks of every phase come from :func:`router_rl.eval.independence.independence_report`
(its thresholds, :class:`~router_rl.eval.independence.IndependenceConfig`); the plan adds
(issue #17, item 5), here and labelled as such:

* Phase 2 latency per task class: P50 < 2 s on SIMPLE tasks and P95 < 5 s on COMPLEX tasks
  (``complex`` and ``very_complex``), next to the overall P50 / P95 (kept, labelled ``overall``);
* Phase 4 also requires >= 95% of the reference quality;
* a phase passes only if its own checks and the earlier phases' quality and cost gates pass
  (cumulative); a check whose input is unknown is *skipped*, never passed.

The *binding* gate of a phase is the check with the smallest relative margin
(``(value - threshold) / threshold`` for ``>=``, ``(threshold - value) / threshold`` for ``<``):
the failing check furthest from its threshold when the phase fails, else the closest to failing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from router_rl.core.config import PositiveFloat, StrictConfig
from router_rl.eval.independence import GateCheck, IndependenceConfig, independence_report

if TYPE_CHECKING:
    from router_rl.eval.live_report import LiveReport

#: Complexity levels counted as COMPLEX tasks by the plan's P95 gate.
COMPLEX_LEVELS: tuple[str, ...] = ("complex", "very_complex")
#: Checks carried from earlier phases into later ones (the plan's cumulative rule).
CUMULATIVE_METRICS: tuple[str, ...] = ("quality_ratio", "cost_saving")


class PlanGates(StrictConfig):
    """The plan's gates beyond :class:`IndependenceConfig` (``None`` = not gated).

    Attributes:
        simple_p50_phase: Phase carrying the SIMPLE-task P50 gate.
        max_simple_p50: Seconds (strict ``<``).
        complex_p95_phase: Phase carrying the COMPLEX-task P95 gate.
        max_complex_p95: Seconds (strict ``<``).
        quality_phase: Phase that also needs ``min_quality_ratio``.
        min_quality_ratio: Minimum quality ratio of ``quality_phase``.
        cumulative: Earlier phases' quality and cost gates must pass too.
    """

    simple_p50_phase: str | None = "phase2"
    max_simple_p50: PositiveFloat = 2.0
    complex_p95_phase: str | None = "phase2"
    max_complex_p95: PositiveFloat = 5.0
    quality_phase: str | None = "phase4"
    min_quality_ratio: PositiveFloat = 0.95
    cumulative: bool = True


@dataclass(frozen=True)
class LiveCheck:
    """One gate check with its provenance.

    Attributes:
        metric, op, threshold, value, passed: As :class:`~router_rl.eval.independence.GateCheck`.
        margin: Relative margin (module docstring; None when skipped).
        origin: ``"phase"`` (the phase's own), ``"plan"`` (added by the plan), or ``"from <phase>"``
            (carried from an earlier phase).
    """

    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool | None
    margin: float | None
    origin: str


@dataclass(frozen=True)
class LivePhase:
    """The checks of one phase, its verdict (None: every check skipped) and its binding check."""

    phase: str
    checks: list[LiveCheck]
    passed: bool | None
    binding: LiveCheck | None


@dataclass(frozen=True)
class LiveGates:
    """Every phase on the live numbers, and where the numbers came from."""

    phases: list[LivePhase]
    inputs: dict[str, Any]

    @property
    def highest_passed(self) -> str | None:
        """The last phase (in order) that passed."""
        ok = [p.phase for p in self.phases if p.passed]
        return ok[-1] if ok else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"highest_passed": self.highest_passed, "inputs": self.inputs,
                "phases": [{"phase": p.phase, "passed": p.passed,
                            "binding": None if p.binding is None else asdict(p.binding),
                            "checks": [asdict(c) for c in p.checks]} for p in self.phases]}


def _margin(c: GateCheck) -> float | None:
    if c.value is None or not math.isfinite(c.value):
        return None
    scale = abs(c.threshold) if c.threshold != 0 else 1.0
    return (c.value - c.threshold) / scale if c.op == ">=" else (c.threshold - c.value) / scale


def _check(metric: str, op: str, threshold: float, value: float | None, origin: str) -> LiveCheck:
    ok: bool | None
    if value is None or not math.isfinite(value):
        ok = None
    else:
        ok = value >= threshold - 1e-12 if op == ">=" else value < threshold
    g = GateCheck(metric, op, threshold, value, ok)
    return LiveCheck(metric, op, threshold, value, ok, _margin(g), origin)


def live_inputs(rep: LiveReport) -> dict[str, Any]:
    """The numbers the gates read from a :class:`LiveReport`, with their sources."""
    ope = rep.quality.get("ope")
    fb = rep.quality.get("ratio_feedback")
    if ope is not None and ope.get("ratio") is not None:
        ref = rep.quality["reference_model"]
        qr, qsrc = ope["ratio"], f"OPE ({ope['estimator']}) of always-{ref} on the labeled rows"
    elif fb is not None and fb.value is not None:
        qr, qsrc = fb.value, (f"feedback: mean quality / mean quality of the rows {rep.quality['reference_model']} "
                              "answered (not the same tasks)")
    else:
        qr, qsrc = None, "unknown (no feedback on the reference model, OPE not run)"
    lat = rep.latency
    simple = lat["task_class"]["simple"]["p50"]
    complex_p95 = lat["task_class"]["complex"]["p95"]
    return {
        "local_share": rep.shares["local"], "cloud_share": rep.shares["cloud"] + rep.shares["emergency"],
        "quality_ratio": qr, "quality_ratio_source": qsrc,
        "cost_saving": rep.cost.get("saving"),
        "latency_p50": lat["overall"]["p50"], "latency_p95": lat["overall"]["p95"],
        "latency_p50_simple": simple, "latency_p95_complex": complex_p95,
    }


def live_gates(rep: LiveReport, config: IndependenceConfig | None = None, plan: PlanGates | None = None) -> LiveGates:
    """Every phase's gates on the live numbers of ``rep`` (module docstring)."""
    cfg = config or IndependenceConfig()
    pg = plan or PlanGates()
    x = live_inputs(rep)
    base = independence_report(local_share=x["local_share"], quality_ratio=x["quality_ratio"],
                               cost_saving=x["cost_saving"], cloud_share=x["cloud_share"],
                               latency_p50=x["latency_p50"], latency_p95=x["latency_p95"], config=cfg)
    phases: list[LivePhase] = []
    carried: list[LiveCheck] = []
    for ph in base.phases:
        checks = []
        for c in ph.checks:
            name = f"{c.metric} (overall)" if c.metric.startswith("latency") else c.metric
            checks.append(_check(name, c.op, c.threshold, c.value, "phase"))
        if pg.simple_p50_phase == ph.phase:
            checks.append(_check("latency_p50_simple", "<", pg.max_simple_p50, x["latency_p50_simple"], "plan"))
        if pg.complex_p95_phase == ph.phase:
            checks.append(_check("latency_p95_complex", "<", pg.max_complex_p95, x["latency_p95_complex"], "plan"))
        if pg.quality_phase == ph.phase and not any(c.metric == "quality_ratio" for c in checks):
            checks.append(_check("quality_ratio", ">=", pg.min_quality_ratio, x["quality_ratio"], "plan"))
        own = {c.metric for c in checks}
        if pg.cumulative:
            checks += [c for c in carried if c.metric not in own]
            carried = [c for c in carried if c.metric not in own]
            carried += [LiveCheck(**{**asdict(c), "origin": f"from {ph.phase}"}) for c in checks
                        if c.metric in CUMULATIVE_METRICS and c.origin in ("phase", "plan")]
        ran = [c.passed for c in checks if c.passed is not None]
        scored = [c for c in checks if c.margin is not None]
        binding = min(scored, key=lambda c: c.margin if c.margin is not None else math.inf) if scored else None
        phases.append(LivePhase(ph.phase, checks, all(ran) if ran else None, binding))
    return LiveGates(phases, x)
