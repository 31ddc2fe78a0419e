"""The phase gates on live numbers, with the binding gate per phase.

Every check comes from :func:`router_rl.eval.independence.independence_report`, the same gates
as offline (issue #17, item 5: Phase 2 latency per task class, P50 < 2 s on SIMPLE tasks and
P95 < 5 s on COMPLEX / VERY_COMPLEX tasks; Phase 4 also requires >= 95% of the reference quality;
a phase passes only if the earlier phases' quality and cost gates pass too). This module only
reads the numbers off a :class:`~router_rl.eval.live_report.LiveReport`, says where each came
from, and adds each check's relative margin and origin.

The margin of a check is ``(value - threshold) / threshold`` for ``>=`` and
``(threshold - value) / threshold`` for ``<``; the *binding* gate of a phase is the check with the
smallest margin (the failing check furthest from its threshold when the phase fails, else the
closest to failing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from router_rl.eval.independence import GateCheck, IndependenceConfig, independence_report
from router_rl.eval.runner import COMPLEX_LEVELS as _COMPLEX_UPPER

if TYPE_CHECKING:
    from router_rl.eval.live_report import LiveReport

#: Complexity levels counted as COMPLEX tasks (as the decision log writes them: lower case).
COMPLEX_LEVELS: tuple[str, ...] = tuple(level.lower() for level in _COMPLEX_UPPER)


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


def live_gates(rep: LiveReport, config: IndependenceConfig | None = None) -> LiveGates:
    """Every phase's gates on the live numbers of ``rep`` (module docstring)."""
    x = live_inputs(rep)
    base = independence_report(local_share=x["local_share"], quality_ratio=x["quality_ratio"],
                               cost_saving=x["cost_saving"], cloud_share=x["cloud_share"],
                               latency_p50=x["latency_p50"], latency_p95=x["latency_p95"],
                               latency_p50_simple=x["latency_p50_simple"],
                               latency_p95_complex=x["latency_p95_complex"], config=config)
    phases: list[LivePhase] = []
    for ph in base.phases:
        checks = [_live(c) for c in ph.checks]
        b = ph.binding
        binding = None if b is None else next(c for c, g in zip(checks, ph.checks, strict=True) if g is b)
        phases.append(LivePhase(ph.phase, checks, ph.passed, binding))
    return LiveGates(phases, x)


def _live(c: GateCheck) -> LiveCheck:
    """A check with its margin and origin (``from <phase>`` for an inherited ``<phase>.<metric>`` check)."""
    phase, dot, _ = c.metric.partition(".")
    return LiveCheck(c.metric, c.op, c.threshold, c.value, c.passed, _margin(c), f"from {phase}" if dot else "phase")
