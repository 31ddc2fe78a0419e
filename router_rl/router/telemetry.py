"""Prometheus metrics (own registry per router) and OpenTelemetry GenAI spans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
BREAKER_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class RouterMetrics:
    """All router metrics, registered in their own :class:`CollectorRegistry`.

    Metric names (prefix ``router_rl_``): ``requests_total{model,strategy,outcome}``,
    ``request_latency_seconds{model}``, ``router_overhead_seconds``, ``cost_usd_total{model}``,
    ``breaker_state{provider}`` (0 closed, 1 half-open, 2 open), ``fallbacks_total{reason}``,
    ``emergency_cloud_total{reason}``, ``budget_exhausted_total{scope,behaviour}``,
    ``policy_errors_total{reason}``, ``shadow_decisions_total{agree}``, ``stream_errors_total{phase}``,
    ``feedback_total{source,outcome}`` (outcome ``stored`` / ``duplicate`` / ``rejected``),
    ``exploring_decisions_total{strategy}`` (decisions drawn under active exploration settings),
    ``explored_decisions_total{strategy}`` (decisions whose chosen model is not the policy's top
    choice; divided by ``requests_total`` of the strategy: the exploration share),
    ``feature_errors_total{reason}`` (requests whose logged features could not be encoded),
    ``policy_rollbacks_total{role,reason}`` (rollbacks of the learned policy: role ``live`` /
    ``canary``, reason ``quality`` / ``errors`` / ``manual``), ``policy_info{role,version}`` (1 for
    the live and the canary version, by their exact policy version), ``canary_share`` (share of
    LEARNED decisions the canary answers, 0..1).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "router_rl_requests", "Routed requests", ["model", "strategy", "outcome"], registry=r
        )
        self.exploring = Counter(
            "router_rl_exploring_decisions", "Decisions drawn under active exploration settings", ["strategy"],
            registry=r,
        )
        self.explored = Counter(
            "router_rl_explored_decisions", "Decisions whose chosen model is not the policy's top choice",
            ["strategy"], registry=r,
        )
        self.latency = Histogram(
            "router_rl_request_latency_seconds", "End-to-end latency", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.overhead = Histogram(
            "router_rl_router_overhead_seconds",
            "Routing decision time (excluding provider calls)",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.cost = Counter("router_rl_cost_usd", "USD spent", ["model"], registry=r)
        self.breaker_state = Gauge(
            "router_rl_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", ["provider"], registry=r
        )
        self.fallbacks = Counter("router_rl_fallbacks", "Fallbacks by reason", ["reason"], registry=r)
        self.emergency_cloud = Counter(
            "router_rl_emergency_cloud", "Emergency cloud fallbacks by trigger", ["reason"], registry=r
        )
        self.budget_exhausted = Counter(
            "router_rl_budget_exhausted", "Requests that hit an exhausted budget", ["scope", "behaviour"], registry=r
        )
        self.policy_errors = Counter(
            "router_rl_policy_errors", "Learned-policy failures answered by the rule policy", ["reason"], registry=r
        )
        self.shadow = Counter("router_rl_shadow_decisions", "Shadow decisions", ["agree"], registry=r)
        self.stream_errors = Counter(
            "router_rl_stream_errors", "Stream failures by phase", ["phase"], registry=r
        )
        self.sensitive = Counter(
            "router_rl_sensitive_requests", "Requests flagged sensitive (served by local models only)", registry=r
        )
        self.hedges = Counter(
            "router_rl_hedged_attempts", "Extra attempts started because an attempt had not answered in time",
            ["model"], registry=r,
        )
        self.budget_reservations = Counter(
            "router_rl_budget_reservations", "Budget reservations by outcome", ["outcome"], registry=r
        )
        self.feedback = Counter(
            "router_rl_feedback", "Outcome feedback events by source and outcome (stored/duplicate/rejected)",
            ["source", "outcome"], registry=r,
        )

        self.feature_errors = Counter(
            "router_rl_feature_errors", "Requests whose decision-log features could not be encoded", ["reason"],
            registry=r,
        )

        self.policy_rollbacks = Counter(
            "router_rl_policy_rollbacks", "Rollbacks of the learned policy by role and reason", ["role", "reason"],
            registry=r,
        )
        self.policy_info = Gauge(
            "router_rl_policy_info", "The learned policy versions serving now (1), by role", ["role", "version"],
            registry=r,
        )
        self.canary_share = Gauge(
            "router_rl_canary_share", "Share of LEARNED decisions answered by the canary version", registry=r
        )

    def set_breaker(self, provider: str, state: str) -> None:
        """Update the breaker-state gauge."""
        self.breaker_state.labels(provider=provider).set(BREAKER_STATE_VALUE[state])

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    """A tracer from ``provider`` (or the global tracer provider)."""
    from opentelemetry import trace

    if provider is not None:
        return provider.get_tracer("router_rl.router")
    return trace.get_tracer("router_rl.router")
