"""Independence gates on hand-made numbers."""

from __future__ import annotations

import pytest

from router_rl.core.errors import ConfigError
from router_rl.eval import IndependenceConfig, PhaseGates, independence_report


def _phase(rep, name):
    return next(p for p in rep.phases if p.phase == name)


def test_phase1_passes_phase2_fails_with_numbers() -> None:
    rep = independence_report(local_share=0.45, quality_ratio=0.92, cost_saving=0.55, latency_p50=1.0, latency_p95=3.0)
    assert _phase(rep, "phase1").passed is True
    p2 = _phase(rep, "phase2")
    assert p2.passed is False
    failed = {c.metric: (c.value, c.threshold) for c in p2.checks if c.passed is False}
    assert failed == {"local_share": (0.45, 0.8), "quality_ratio": (0.92, 0.95), "cost_saving": (0.55, 0.6)}
    # no complexity labels: the overall figures stand in, labelled; phase 1's gates are inherited
    assert {c.metric for c in p2.checks if c.passed} == {
        "latency_p50_all", "latency_p95_all", "phase1.quality_ratio", "phase1.cost_saving"}
    assert rep.highest_passed == "phase1"
    assert p2.binding is not None and p2.binding.metric == "local_share"  # furthest below: 0.45 vs 0.8


def test_boundaries_and_strict_latency() -> None:
    rep = independence_report(local_share=0.8, quality_ratio=0.95, cost_saving=0.6, latency_p50=9.0, latency_p95=9.0,
                              latency_p50_simple=1.99, latency_p95_complex=5.0)
    p2 = _phase(rep, "phase2")
    assert {c.metric: c.passed for c in p2.checks} == {
        "local_share": True,
        "quality_ratio": True,
        "cost_saving": True,
        "latency_p50_simple": True,  # the plan: P50 < 2 s for SIMPLE tasks (the overall 9 s is not gated)
        "latency_p95_complex": False,  # P95 < 5 s for COMPLEX tasks, strict
        "phase1.quality_ratio": True,
        "phase1.cost_saving": True,
    }
    assert p2.binding.metric == "latency_p95_complex"


def test_unknown_latency_is_skipped_not_passed() -> None:
    rep = independence_report(local_share=0.85, quality_ratio=0.97, cost_saving=0.7)
    p2 = _phase(rep, "phase2")
    assert p2.passed is True
    assert [c.passed for c in p2.checks if c.metric.startswith("latency")] == [None, None]
    assert [c.metric for c in p2.checks if c.metric.startswith("latency")] == ["latency_p50_all", "latency_p95_all"]
    # no locality known: phase4 has nothing to check -> None, never "passed"
    rep = independence_report(local_share=None, quality_ratio=None, cost_saving=None)
    assert _phase(rep, "phase4").passed is None and rep.highest_passed is None


def test_phase4_cloud_share() -> None:
    rep = independence_report(local_share=0.995, quality_ratio=0.96, cost_saving=0.9)
    assert _phase(rep, "phase4").passed is True
    rep = independence_report(local_share=0.995, quality_ratio=0.96, cost_saving=0.9, cloud_share=0.012)
    p4 = _phase(rep, "phase4")
    assert p4.passed is False and [c.metric for c in p4.checks if c.passed is False] == ["cloud_share"]
    d = rep.to_dict()
    assert d["phases"][2]["binding"] == "cloud_share"
    assert d["phases"][2]["checks"][2] == {
        "metric": "cloud_share",
        "op": "<",
        "threshold": 0.01,
        "value": 0.012,
        "passed": False,
    }


def test_config_validation_and_custom_thresholds() -> None:
    with pytest.raises(ConfigError, match="min_local_share"):
        PhaseGates(min_local_share=1.5)
    with pytest.raises(ConfigError, match="max_latency_p50"):
        PhaseGates(max_latency_p50=-1)
    with pytest.raises(ConfigError, match="phases"):
        IndependenceConfig(phases={})
    cfg = IndependenceConfig(phases={"pilot": PhaseGates(min_local_share=0.1)})
    rep = independence_report(local_share=0.2, quality_ratio=0.5, cost_saving=0.0, config=cfg)
    assert [p.phase for p in rep.phases] == ["pilot"] and rep.highest_passed == "pilot"


def test_phase4_needs_the_quality_of_every_phase() -> None:
    """A router at 3% of the reference quality, all local, is not independence (issue #17 item 5)."""
    rep = independence_report(local_share=1.0, quality_ratio=0.03, cost_saving=0.99)
    p4 = _phase(rep, "phase4")
    assert p4.passed is False and rep.highest_passed is None
    failing = {c.metric for c in p4.checks if c.passed is False}
    assert failing == {"quality_ratio", "phase1.quality_ratio", "phase2.quality_ratio"}
    # quality met in phase 4 itself but not phase 2's cost gate: phase 4 still fails, naming it
    rep = independence_report(local_share=1.0, quality_ratio=0.97, cost_saving=0.55)
    p4 = _phase(rep, "phase4")
    assert p4.passed is False
    assert {c.metric for c in p4.checks if c.passed is False} == {"phase2.cost_saving"}  # 0.55 >= phase 1's 0.50


def test_latency_by_complexity_reads_the_label() -> None:
    import numpy as np
    import polars as pl

    from router_rl.eval.runner import latency_by_complexity

    tasks = pl.DataFrame({"complexity": ["SIMPLE", "SIMPLE", "SIMPLE", "COMPLEX", "VERY_COMPLEX", "MODERATE"]})
    lat = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 100.0])
    out = latency_by_complexity(lat, tasks)
    assert out["latency_p50_simple"] == 2.0
    assert out["latency_p95_complex"] == np.percentile([10.0, 20.0], 95)
    assert latency_by_complexity(lat, pl.DataFrame({"x": [1] * 6})) == {
        "latency_p50_simple": None, "latency_p95_complex": None}
