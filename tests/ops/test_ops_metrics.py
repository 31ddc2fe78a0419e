"""The router's operations series (telemetry.OperationsMetrics) and the live phase gates on known numbers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from router_rl.eval.live_gates import live_gates
from router_rl.eval.live_report import Interval, LiveReport
from router_rl.router.telemetry import MAX_LABEL_VALUES, BoundedLabels, OperationsMetrics, RouterMetrics


class Clock:
    """A settable clock (seconds)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _value(reg: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return reg.get_sample_value(name, labels)


def test_breaker_history_gives_up_transitions_and_down_seconds() -> None:
    reg, clock = CollectorRegistry(), Clock()
    ops = OperationsMetrics(reg, clock=clock)
    ops.breaker_changed("local", "closed")  # initial state: not a transition
    clock.t = 110.0
    ops.breaker_changed("local", "open")
    clock.t = 113.0
    ops.breaker_changed("local", "half_open")  # still not closed: down
    clock.t = 114.5
    assert _value(reg, "router_rl_provider_down_seconds_total", {"provider": "local"}) == 4.5  # open, counting
    ops.breaker_changed("local", "closed")
    clock.t = 200.0
    assert _value(reg, "router_rl_provider_down_seconds_total", {"provider": "local"}) == 4.5
    assert _value(reg, "router_rl_provider_up", {"provider": "local"}) == 1.0
    assert _value(reg, "router_rl_breaker_transitions_total", {"provider": "local", "to": "open"}) == 1.0
    assert _value(reg, "router_rl_breaker_transitions_total", {"provider": "local", "to": "half_open"}) == 1.0
    assert _value(reg, "router_rl_breaker_transitions_total", {"provider": "local", "to": "closed"}) == 1.0


def test_router_metrics_feed_the_block_from_set_breaker() -> None:
    m = RouterMetrics()
    m.set_breaker("cloud", "closed")
    m.set_breaker("cloud", "open")
    assert m.registry.get_sample_value("router_rl_provider_up", {"provider": "cloud"}) == 0.0
    assert m.registry.get_sample_value("router_rl_breaker_state", {"provider": "cloud"}) == 2.0
    assert b"router_rl_provider_down_seconds_total" in m.render()


def test_requests_tokens_and_feedback_are_labelled_by_the_answering_location() -> None:
    reg = CollectorRegistry()
    ops = OperationsMetrics(reg)
    ops.observe_request(request_id="a", model="small", location="local", complexity="simple", agent_type="gen",
                        outcome="ok", latency_s=0.3, input_tokens=40, output_tokens=120)
    ops.observe_request(request_id="b", model=None, location=None, complexity="complex", agent_type="gen",
                        outcome="error", latency_s=1.0, input_tokens=None, output_tokens=None)
    ops.observe_feedback("a", "judge", 0.8)
    ops.observe_feedback("zzz", "judge", 0.5)  # a request the router does not remember
    assert _value(reg, "router_rl_tokens_total", {"model": "small", "direction": "output"}) == 120
    assert _value(reg, "router_rl_requests_by_class_total",
                  {"location": "none", "complexity": "complex", "agent_type": "gen", "outcome": "error"}) == 1
    assert _value(reg, "router_rl_task_latency_seconds_count", {"complexity": "simple", "agent_type": "gen"}) == 1
    assert _value(reg, "router_rl_task_latency_seconds_count", {"complexity": "complex", "agent_type": "gen"}) is None
    assert _value(reg, "router_rl_feedback_quality_sum",
                  {"location": "local", "agent_type": "gen", "source": "judge"}) == 0.8
    assert _value(reg, "router_rl_feedback_quality_count",
                  {"location": "unknown", "agent_type": "unknown", "source": "judge"}) == 1


def test_bounded_labels_keep_the_first_values() -> None:
    lab = BoundedLabels()
    got = [lab(f"t{i}") for i in range(MAX_LABEL_VALUES + 3)]
    assert got[:MAX_LABEL_VALUES] == [f"t{i}" for i in range(MAX_LABEL_VALUES)]
    assert got[MAX_LABEL_VALUES:] == ["other"] * 3 and lab("t0") == "t0" and lab(None) == "none"


def _report(*, local: float, quality_ratio: float, saving: float, simple_p50: float, complex_p95: float | None
            ) -> LiveReport:
    pct = {"n": 10, "p50": 0.5, "p95": 1.0, "p99": 1.5, "mean": 0.6}
    return LiveReport(
        source={}, counts={}, shares={"local": local, "cloud": 1 - local, "emergency": 0.0, "failed": 0.0},
        series={}, bucket_s=60, cost={"saving": saving}, per_model={},
        latency={"overall": pct, "complexity": {}, "agent_type": {}, "task_class": {
            "simple": {**pct, "p50": simple_p50}, "complex": {**pct, "p95": complex_p95}}},
        quality={"reference_model": "cloud", "ope": None,
                 "ratio_feedback": Interval(quality_ratio, quality_ratio - 0.01, quality_ratio + 0.01, 100)},
        fallbacks={}, providers={}, operations={})


def test_gates_are_cumulative_with_plan_checks_and_a_binding_check() -> None:
    g = live_gates(_report(local=0.995, quality_ratio=0.97, saving=0.7, simple_p50=2.5, complex_p95=4.0))
    by = {p.phase: p for p in g.phases}
    assert by["phase1"].passed is True
    # phase 2: everything passes but the SIMPLE-task P50 (2.5 s >= 2 s): it binds
    assert by["phase2"].passed is False and by["phase2"].binding.metric == "latency_p50_simple"
    assert by["phase2"].binding.margin == (2.0 - 2.5) / 2.0
    p4 = {c.metric: c for c in by["phase4"].checks}
    assert p4["quality_ratio"].origin == "phase" and p4["quality_ratio"].passed is True
    assert p4["phase2.cost_saving"].origin == "from phase2" and p4["phase2.cost_saving"].threshold == 0.6
    assert by["phase4"].passed is True and g.highest_passed == "phase4"
    # a quality just under 95% now fails phase 4 through the plan's quality gate
    low = live_gates(_report(local=0.995, quality_ratio=0.94, saving=0.7, simple_p50=1.0, complex_p95=4.0))
    assert {p.phase: p.passed for p in low.phases} == {"phase1": True, "phase2": False, "phase4": False}
    # unknown complex latency: the overall P95 stands in, labelled (here known: 4 s in _report)
    skip = live_gates(_report(local=0.995, quality_ratio=0.97, saving=0.7, simple_p50=1.0, complex_p95=None))
    p2 = {c.metric: c for c in skip.phases[1].checks}
    assert "latency_p95_complex" not in p2 and "latency_p95_all" in p2
