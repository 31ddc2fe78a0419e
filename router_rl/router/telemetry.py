"""Prometheus metrics (own registry per router) and OpenTelemetry GenAI spans."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
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
        self.ops = OperationsMetrics(r)

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
        """Update the breaker-state gauge (and the operations block's up / transitions / down time)."""
        self.breaker_state.labels(provider=provider).set(BREAKER_STATE_VALUE[state])
        self.ops.breaker_changed(provider, state)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    """A tracer from ``provider`` (or the global tracer provider)."""
    from opentelemetry import trace

    if provider is not None:
        return provider.get_tracer("router_rl.router")
    return trace.get_tracer("router_rl.router")


# --- operations metrics (issue #24: alert rules, dashboards; docs/operations.md) ---------------
QUALITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
#: Distinct client-chosen label values kept per label before the rest become ``other``.
MAX_LABEL_VALUES = 32
#: Recent requests remembered for labelling their feedback (served model's location, agent type).
RECENT_REQUESTS = 200_000


class BoundedLabels:
    """Bounded Prometheus label values for client-chosen strings (first ``limit`` kept, then ``other``)."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        """The label of ``value`` (``none`` for a missing one)."""
        if value is None or value == "":
            return "none"
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "other"


class _DownSeconds:
    """Custom collector: ``router_rl_provider_down_seconds_total{provider}`` (breaker not closed)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: dict[str, float | None] = {}
        self._total: dict[str, float] = {}

    def changed(self, provider: str, up: bool) -> None:
        now = self._clock()
        with self._lock:
            self._total.setdefault(provider, 0.0)
            since = self._down_since.get(provider)
            if up and since is not None:
                self._total[provider] += now - since
                self._down_since[provider] = None
            elif not up and since is None:
                self._down_since[provider] = now
            else:
                self._down_since.setdefault(provider, None)

    def seconds(self, provider: str) -> float:
        now = self._clock()
        with self._lock:
            since = self._down_since.get(provider)
            return self._total.get(provider, 0.0) + (now - since if since is not None else 0.0)

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily(
            "router_rl_provider_down_seconds",
            "Seconds each provider's circuit breaker was not closed (open or half-open) since start",
            labels=["provider"],
        )
        with self._lock:
            names = sorted(self._total)
        for name in names:
            fam.add_metric([name], self.seconds(name))
        yield fam


class OperationsMetrics:
    """The series the alert rules and dashboards read, beyond :class:`RouterMetrics`' own.

    Names (prefix ``router_rl_``): ``tokens_total{model,direction}`` (direction ``input`` /
    ``output``), ``requests_by_class_total{location,complexity,agent_type,outcome}``,
    ``task_latency_seconds{complexity,agent_type}`` (end-to-end, served requests),
    ``feedback_quality{location,agent_type,source}`` (histogram of stored feedback quality, the
    location of the model that answered; ``unknown`` when the request is older than the last
    :data:`RECENT_REQUESTS`), ``provider_up{provider}`` (1 closed breaker, 0 open / half-open),
    ``breaker_transitions_total{provider,to}``, ``provider_down_seconds_total{provider}``.
    Agent types are bounded (:class:`BoundedLabels`).
    """

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.monotonic) -> None:
        r = registry
        self.tokens = Counter("router_rl_tokens", "Tokens of served calls", ["model", "direction"], registry=r)
        self.by_class = Counter(
            "router_rl_requests_by_class", "Finished requests by served location, complexity, agent type, outcome",
            ["location", "complexity", "agent_type", "outcome"], registry=r,
        )
        self.task_latency = Histogram(
            "router_rl_task_latency_seconds", "End-to-end latency of served requests by complexity and agent type",
            ["complexity", "agent_type"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.quality = Histogram(
            "router_rl_feedback_quality", "Quality of stored outcome feedback (0-1)",
            ["location", "agent_type", "source"], buckets=QUALITY_BUCKETS, registry=r,
        )
        self.provider_up = Gauge(
            "router_rl_provider_up", "1 when the provider's circuit breaker is closed, else 0", ["provider"], registry=r
        )
        self.transitions = Counter(
            "router_rl_breaker_transitions", "Circuit breaker state changes by new state", ["provider", "to"],
            registry=r,
        )
        self._down = _DownSeconds(clock)
        r.register(self._down)  # type: ignore[arg-type]
        self._agent_types = BoundedLabels()
        self._recent: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._states: dict[str, str] = {}

    def breaker_changed(self, provider: str, state: str) -> None:
        """Record a breaker state (the first call per provider is its initial state, not a transition)."""
        prev = self._states.get(provider)
        self._states[provider] = state
        if prev is not None and prev != state:
            self.transitions.labels(provider=provider, to=state).inc()
        up = state == "closed"
        self.provider_up.labels(provider=provider).set(1 if up else 0)
        self._down.changed(provider, up)

    def observe_request(
        self,
        *,
        request_id: str,
        model: str | None,
        location: str | None,
        complexity: str,
        agent_type: str | None,
        outcome: str,
        latency_s: float,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> None:
        """Count one finished request (called once per request by the accounting)."""
        at = self._agent_types(agent_type)
        loc = location or "none"
        self.by_class.labels(location=loc, complexity=complexity, agent_type=at, outcome=outcome).inc()
        if model is None:
            return
        self.task_latency.labels(complexity=complexity, agent_type=at).observe(latency_s)
        if input_tokens is not None:
            self.tokens.labels(model=model, direction="input").inc(input_tokens)
        if output_tokens is not None:
            self.tokens.labels(model=model, direction="output").inc(output_tokens)
        with self._recent_lock:
            self._recent[request_id] = (loc, at)
            if len(self._recent) > RECENT_REQUESTS:
                self._recent.popitem(last=False)

    def observe_feedback(self, request_id: str, source: str, quality: float) -> None:
        """Observe one stored feedback event (``source`` already a bounded label)."""
        with self._recent_lock:
            loc, at = self._recent.get(request_id, ("unknown", "unknown"))
        self.quality.labels(location=loc, agent_type=at, source=source).observe(quality)
