"""Per-request bookkeeping: OpenTelemetry spans, Prometheus metrics, cost and the decision-log row.

Every request ends in :meth:`Accounting.finish`, exactly once (also rejected and failed ones),
which settles its budget reservation, counts it, writes its decision-log row and ends its span.
Spans end through :func:`end_span` only, so attributes and error status are set one way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import RouterRLError
from router_rl.providers.base import Provider, ProviderError, Usage
from router_rl.router.budget import BudgetTracker
from router_rl.router.config import COMPLEXITY_LEVELS, RouterConfig
from router_rl.router.policy_state import PolicyStateTracker
from router_rl.router.request import RequestContext, RoutingDecision
from router_rl.router.strategies import ModelTable
from router_rl.router.telemetry import RouterMetrics
from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.decision_log import DecisionLogWriter

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from router_rl.router.refining import RefineRun

GEN_AI_SYSTEM = {"openai_compatible": "openai", "ollama": "ollama", "anthropic": "anthropic"}


def error_kind(err: BaseException) -> str:
    """The ``error.type`` of a failure: a provider error's kind, else the exception's class name."""
    return err.kind.value if isinstance(err, ProviderError) else type(err).__name__


def end_span(span: Span, *, model: str | None = None, usage: Usage | None = None, error: str | None = None) -> None:
    """Set the response attributes (model, token usage) and the error status of a span, then end it."""
    if model is not None:
        span.set_attribute("gen_ai.response.model", model)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    if error:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


class Accounting:
    """Spans, metrics, cost and decision-log rows of the router's requests.

    Args:
        config: Validated configuration.
        table: Model facts (the action set, locations).
        catalog: Prices (the fallback when a provider cannot price a call).
        providers: Provider by name.
        model_provider: Model id -> provider name.
        provider_kinds: Provider name -> provider kind (the span's ``gen_ai.system``).
        budget: Budget tracker (spend is recorded / reservations settled here).
        policy_state: Router state of stateful policies (served models are counted here).
        metrics: Metrics holder.
        tracer: OpenTelemetry tracer.
        decision_log: Writer of the decision log (``None``: no log).
        clock: Monotonic clock (latencies).
        wall_clock: Epoch clock (row timestamps).
        breaker_states: Provider -> breaker state, logged with every row.
        version_prefix: Prefix of rule-policy versions (``rules@<config fingerprint>``).
        on_learned_outcome: Called with ``(learned_version, bad)`` at the end of every request a
            learned policy version was asked for (the live policies' outcome window): ``bad``
            when the request failed (not a budget refusal), the policy failed and the rule
            policy answered, or another model than the chosen one served.
    """

    def __init__(
        self,
        config: RouterConfig,
        table: ModelTable,
        catalog: ModelCatalog,
        providers: Mapping[str, Provider],
        model_provider: Mapping[str, str],
        provider_kinds: Mapping[str, str],
        budget: BudgetTracker,
        policy_state: PolicyStateTracker,
        metrics: RouterMetrics,
        tracer: Tracer,
        decision_log: DecisionLogWriter | None,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        breaker_states: Callable[[], dict[str, str]],
        version_prefix: str,
        on_learned_outcome: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.config = config
        self.table = table
        self.catalog = catalog
        self.providers = providers
        self.model_provider = model_provider
        self.provider_kinds = provider_kinds
        self.budget = budget
        self.policy_state = policy_state
        self.metrics = metrics
        self.tracer = tracer
        self.decision_log = decision_log
        self._clock = clock
        self._wall = wall_clock
        self._breaker_states = breaker_states
        self.version_prefix = version_prefix
        self._on_learned_outcome = on_learned_outcome

    # --- spans ------------------------------------------------------------------------------
    def start_span(self, ctx: RequestContext) -> None:
        """Open the request's span (``ctx.span``)."""
        span = self.tracer.start_span(f"chat {ctx.inp.model}")
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", "router-rl")
        span.set_attribute("router_rl.request_id", ctx.request_id)
        span.set_attribute("router_rl.requested_model", ctx.inp.model)
        span.set_attribute("router_rl.sensitive", ctx.sensitive)
        ctx.span = span

    def attempt_span(self, ctx: RequestContext, model: str, stream: bool) -> Span:
        """A client span of one provider attempt, child of the request's span."""
        from opentelemetry import trace

        parent = trace.set_span_in_context(ctx.span) if ctx.span is not None else None
        pname = self.model_provider[model]
        span = self.tracer.start_span(f"chat {model}", context=parent, kind=trace.SpanKind.CLIENT)
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", GEN_AI_SYSTEM.get(self.provider_kinds[pname], pname))
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("router_rl.provider", pname)
        span.set_attribute("router_rl.stream", stream)
        if ctx.inp.max_tokens is not None:
            span.set_attribute("gen_ai.request.max_tokens", ctx.inp.max_tokens)
        return span

    # --- the end of a request ---------------------------------------------------------------
    def call_cost(self, model: str, usage: Usage, latency_s: float | None) -> float:
        """USD of one call (the provider's price, else the catalog's token prices); no side effects."""
        provider = self.providers[self.model_provider[model]]
        try:
            return float(provider.cost(model, usage, latency_s or 0.0))
        except RouterRLError:
            return float(self.catalog[model].cost(usage.input_tokens, usage.output_tokens))

    def _cost(self, ctx: RequestContext, served: str, usage: Usage, latency_s: float | None) -> float:
        cost = self.call_cost(served, usage, latency_s)
        if ctx.reservation is None:
            self.budget.record(ctx.agent_id, cost)
        self.metrics.cost.labels(model=served).inc(cost)
        return cost

    def finish(
        self,
        ctx: RequestContext,
        d: RoutingDecision | None,
        *,
        served: str | None = None,
        fallback_reason: str | None = None,
        usage: Usage | None = None,
        latency_s: float | None = None,
        error: str | None = None,
        refine: RefineRun | None = None,
        response: str | None = None,
    ) -> float:
        """Settle, count, log and end the span of one request; returns the request's cost (USD).

        Args:
            ctx: The request.
            d: Its decision (``None``: refused before a decision).
            served: The model that answered (``None``: none did).
            fallback_reason: Why another model than the chosen one answered.
            usage: Token usage of the served call.
            latency_s: Duration of the served call (prices GPU-seconds of local models).
            error: What went wrong (``None``: served).
            refine: What refinement added (its calls are already settled on the budget): the row
                then has the total cost and tokens, the refined answer's model as
                ``outcome_model`` and the ``refine_*`` columns.
            response: The answer text (logged only when opted in for the agent type, see
                :meth:`row`).
        """
        cost = self._cost(ctx, served, usage, latency_s) if served is not None and usage is not None else 0.0
        if ctx.reservation is not None:
            self.budget.settle(ctx.reservation, cost)
        if refine is not None:
            cost += refine.extra_cost_usd
            if usage is not None:
                usage = Usage(usage.input_tokens + refine.extra_input_tokens,
                              usage.output_tokens + refine.extra_output_tokens, estimated=usage.estimated)
        if served is not None:
            self.policy_state.record_served(served)
        total = self._clock() - ctx.t0
        outcome = "error" if error else ("fallback" if served != (d.chosen if d else None) else "ok")
        strategy = d.strategy if d else "rejected"
        self.metrics.requests.labels(model=served or "none", strategy=strategy, outcome=outcome).inc()
        if d is not None and d.exploration is not None:
            self.metrics.exploring.labels(strategy=strategy).inc()
        if d is not None and d.explored:
            self.metrics.explored.labels(strategy=strategy).inc()
        if served is not None:
            self.metrics.latency.labels(model=served).observe(total)
        self.metrics.overhead.observe(max(0.0, total - ctx.backend_s))
        if fallback_reason:
            self.metrics.fallbacks.labels(reason=fallback_reason).inc()
        answered = refine.model if refine is not None and served is not None else served
        self.metrics.ops.observe_request(
            request_id=ctx.request_id, model=served, outcome=outcome if d is not None else "rejected", latency_s=total,
            location=(self.catalog[answered].location if answered in self.catalog else None) if answered else None,
            complexity=COMPLEXITY_LEVELS[ctx.level], agent_type=ctx.inp.agent_type,
            input_tokens=usage.input_tokens if usage else None, output_tokens=usage.output_tokens if usage else None,
        )
        if d is not None and d.learned_version is not None and self._on_learned_outcome is not None:
            self._on_learned_outcome(d.learned_version, learned_outcome_bad(d, served, error))
        if self.decision_log is not None:
            self.decision_log.append(
                self.row(ctx, d, served=served, fallback_reason=fallback_reason, cost=cost if served else None,
                         usage=usage, error=error, refine=refine, response=response)
            )
        if ctx.span is not None:
            span = ctx.span
            span.set_attribute("router_rl.strategy", strategy)
            span.set_attribute("router_rl.fallback_used", bool(served and d and served != d.chosen))
            if d is not None:
                span.set_attribute("gen_ai.request.model", d.chosen)
            end_span(span, model=served, usage=usage, error=error)
        return cost

    def row(
        self,
        ctx: RequestContext,
        d: RoutingDecision | None,
        *,
        served: str | None,
        fallback_reason: str | None,
        cost: float | None,
        usage: Usage | None,
        error: str | None,
        refine: RefineRun | None = None,
        response: str | None = None,
    ) -> dict[str, Any]:
        """The decision-log row of one request (:data:`~router_rl.traces.schema.DECISION_LOG_SCHEMA`).

        ``prompt`` is filled when ``logging.log_prompts`` is on or the agent type is opted in
        (``logging.text_for_agent_types``), ``response`` only in the latter case; neither ever
        for a request the screening flagged sensitive.
        """
        lc = self.config.logging
        agent_type = ctx.inp.agent_type
        log_prompt = not ctx.sensitive and lc.log_prompt(agent_type)
        log_response = not ctx.sensitive and lc.log_response(agent_type)
        # a request rejected before any decision (unknown model, ...) is logged as never executed:
        # strategy "rejected", one-hot on the first model, served_model null, error set
        models = d.models if d else self.table.models
        probs = d.probs if d else tuple(1.0 if i == 0 else 0.0 for i in range(len(models)))
        chosen = d.chosen if d else models[0]
        reason = fallback_reason or (d.note if d else None)
        row = {
            "request_id": ctx.request_id,
            "ts": datetime.fromtimestamp(self._wall(), tz=UTC),
            "agent_id": ctx.inp.agent_id,
            "agent_type": ctx.inp.agent_type,
            "category": ctx.inp.category,  # redacted by the screening when it held a secret
            "complexity": COMPLEXITY_LEVELS[ctx.level],
            "declared_complexity": ctx.inp.complexity,
            "prompt_chars": len(ctx.prompt),
            "prompt_sha256": hashlib.sha256(ctx.prompt.encode()).hexdigest(),
            "prompt": ctx.prompt if log_prompt else None,
            "features": list(d.features) if d and d.features is not None else None,
            "encoder_fingerprint": d.encoder_fingerprint if d and d.features is not None else None,
            "strategy": d.strategy if d else "rejected",
            "decided_by": d.decided_by if d else "rejected",
            "policy_version": d.policy_version if d else f"{self.version_prefix}:none",
            "action_models": list(models),
            "action_probs": list(probs),
            "chosen_model": chosen,
            "propensity": d.propensity if d else probs[0],
            "explored": d.explored if d else None,
            "exploration": d.exploration if d else None,
            "shadow_model": d.shadow_model if d else None,
            "breaker_states": json.dumps(self._breaker_states(), sort_keys=True),
            "policy_state": d.policy_state if d else None,
            "served_model": served,
            "served_propensity": (probs[models.index(served)] if served in models else 0.0) if served else None,
            "outcome_model": served,
            "attempts": list(ctx.attempts),
            "fallback_used": bool(served is not None and served != chosen),
            "fallback_reason": reason,
            "quality": None,
            "cost_usd": cost,
            "latency_s": self._clock() - ctx.t0,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "usage_estimated": usage.estimated if usage else None,
            "error": error,
            "response": response if log_response else None,
        }
        if refine is not None:
            row.update(refine.log_fields())
            row["outcome_model"] = refine.model
        return row


#: notes of a learned decision that are not the policy's failure
_NOT_POLICY_FAILURES = ("policy_masked", "policy_unavailable")


def learned_outcome_bad(d: RoutingDecision, served: str | None, error: str | None) -> bool:
    """Whether a request a learned version was asked for went wrong (see ``Accounting``'s ``on_learned_outcome``)."""
    if error is not None and error != "budget_exhausted":
        return True
    note = d.note or ""
    if note.startswith("policy_") and note not in _NOT_POLICY_FAILURES:
        return True
    return served is not None and served != d.chosen
