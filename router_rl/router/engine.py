"""The live hybrid router: composes decision, execution and accounting of each request.

:class:`HybridRouter` owns the providers, one circuit breaker per provider and the budget
tracker, and wires the parts together:

* screening (:mod:`router_rl.router.screening`): secrets / PII, complexity;
* the decision (:mod:`router_rl.router.decider`): strategies, the learned policy, rollout state
  (shadow, A/B, kill switch);
* execution (:mod:`router_rl.router.chain`): the local-first fallback chain, breakers, budget
  reservations, hedged attempts, emergency cloud; streams after their first token
  (:mod:`router_rl.router.stream`);
* accounting (:mod:`router_rl.router.accounting`): spans, metrics, cost, the decision-log row,
  with the request's features (:mod:`router_rl.router.encoding`).

:meth:`HybridRouter.route` serves a non-streaming request; :meth:`HybridRouter.route_stream` a
streaming one.

Invariants:

* A request flagged sensitive (secrets / PII) is only ever sent to local models, including on
  every fallback path (the chain re-checks it before each call).
* Every request produces exactly one decision-log row (also rejected and failed ones).
* The logged ``action_probs`` is the distribution the executed decision was drawn from, after
  privacy / budget masks, so ``propensity`` is valid for off-policy evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from router_rl.core.errors import ConfigError
from router_rl.providers.base import Provider, StreamChunk, Usage
from router_rl.router.accounting import Accounting, end_span
from router_rl.router.breaker import BreakerState, CircuitBreaker
from router_rl.router.budget import BudgetStatus, BudgetTracker, ExhaustedBehaviour
from router_rl.router.chain import ChainWalker
from router_rl.router.config import RouterConfig, Strategy
from router_rl.router.decider import Decider
from router_rl.router.encoding import RequestEncoder
from router_rl.router.errors import BudgetExhaustedError, RouterRequestError
from router_rl.router.live_policy import LivePolicies
from router_rl.router.policy_client import PolicyClient
from router_rl.router.policy_state import PolicyStateTracker
from router_rl.router.refine import CheckFn
from router_rl.router.refining import RouterRefiner
from router_rl.router.request import AUTO, PREFIX, RequestContext, RouteInput, RouteResult, RoutingDecision
from router_rl.router.screening import RequestScreener
from router_rl.router.strategies import ModelTable
from router_rl.router.stream import StreamEnd, StreamSession, aclose_quietly
from router_rl.router.telemetry import RouterMetrics, get_tracer
from router_rl.router.upstream import build_router_providers
from router_rl.traces.decision_log import DecisionLogWriter

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

log = logging.getLogger("router_rl.router")
_T = TypeVar("_T")


class HybridRouter:
    """The live router.

    Args:
        config: Validated configuration.
        providers: Provider instances by name (built from ``config.providers`` when ``None``).
        policy_client: Source of the LEARNED strategy (built from ``config.learned`` when
            ``None`` and that strategy is used).
        clock: Monotonic clock for breakers and timings (inject in tests).
        wall_clock: Epoch clock for budgets and log timestamps.
        metrics: Metrics holder (a fresh registry by default).
        tracer_provider: OpenTelemetry tracer provider (global one by default).
        decision_log: Writer (built from ``config.logging`` when ``None`` and a folder is set).
        sensitive_fn: ``text -> bool`` privacy detector (default
            :func:`router_rl.features.privacy.is_sensitive`).
        shadow_policy_client: Candidate policy of the shadow (built from ``rollout.shadow``
            when ``None`` and a candidate policy is configured there).
        refine_check: The judge of iterative refinement (``refine:``); ``None``: the model
            checks its own answer (:func:`~router_rl.router.refine.self_check`).
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        providers: dict[str, Provider] | None = None,
        policy_client: PolicyClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        metrics: RouterMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
        decision_log: DecisionLogWriter | None = None,
        sensitive_fn: Callable[[str], bool] | None = None,
        shadow_policy_client: PolicyClient | None = None,
        refine_check: CheckFn | None = None,
    ) -> None:
        import numpy as np

        self.config = config
        self.catalog = config.build_catalog()
        self._clock = clock
        self.providers = providers if providers is not None else build_router_providers(
            config.providers, catalog=self.catalog, rng=np.random.default_rng(config.seed),
            client=config.upstream_client,
        )
        missing = [p.name for p in config.providers if p.name not in self.providers]
        if missing:
            raise ConfigError("providers", f"no provider instance for {missing}")
        self.model_provider = {m: p.name for p in config.providers for m in p.model_ids}
        self.table = ModelTable.from_config(config, self.catalog)
        self.metrics = metrics or RouterMetrics()
        self.breakers = {
            p.name: CircuitBreaker(p.name, config.breaker, clock=clock, on_change=self._on_breaker_change)
            for p in config.providers
        }
        for name in self.breakers:
            self.metrics.set_breaker(name, BreakerState.CLOSED.value)
        self.budget = BudgetTracker(config.budgets, clock=wall_clock)
        self.policy_state = PolicyStateTracker(self.budget, self.breakers, self.table.local, wall_clock)
        self.decider = Decider(config, self.table, frozenset(self.model_provider), self.budget, self.policy_state,
                               self.metrics, self._open_models, policy_client=policy_client,
                               shadow_policy_client=shadow_policy_client)
        self.encoding = RequestEncoder.build(config.features.encoder_path, self.decider.policy_client, self.metrics)
        lc = config.logging
        if decision_log is None and lc.decision_log_dir is not None:
            decision_log = DecisionLogWriter(  # which rows carry text is decided per row (accounting)
                lc.decision_log_dir,
                batch_size=lc.batch_size,
                flush_interval_s=lc.flush_interval_s,
                log_prompts=lc.log_prompts or bool(lc.text_for_agent_types),
                log_responses=bool(lc.text_for_agent_types),
            )
        self.decision_log = decision_log
        self.accounting = Accounting(
            config, self.table, self.catalog, self.providers, self.model_provider,
            {p.name: p.kind for p in config.providers}, self.budget, self.policy_state, self.metrics,
            get_tracer(tracer_provider), decision_log, clock, wall_clock, self.breaker_states,
            self.decider.version_prefix, on_learned_outcome=self.decider.policies.on_outcome,
        )
        self.chain = ChainWalker(config, self.table, self.providers, self.model_provider, self.breakers,
                                 self.budget, self.metrics, self.accounting, clock)
        self.refiner: RouterRefiner | None = None
        if config.refine.enabled:
            from router_rl.router.refine import RefineMetrics

            self.refiner = RouterRefiner(
                config.refine, self.chain, self.table, RefineMetrics(self.metrics.registry),
                lambda ctx, d: self.chain.emergency_trigger(ctx, d, slow_failure=False) is not None,
                check=refine_check, clock=clock,
            )
        if sensitive_fn is None:
            from router_rl.features.privacy import is_sensitive

            sensitive_fn = is_sensitive
        self.screener = RequestScreener(sensitive_fn)

    @classmethod
    def from_config(cls, config: RouterConfig, **kwargs: Any) -> HybridRouter:
        """Build a router and its providers from a config (keys are checked first)."""
        config.check_credentials()
        return cls(config, **kwargs)

    async def aclose(self) -> None:
        """Close providers, the policy clients and flush the decision log."""
        await self.chain.aclose()
        for p in self.providers.values():
            await p.close()
        await self.decider.aclose()
        if self.decision_log is not None:
            self.decision_log.close()
        self.screener.close()
        self.budget.close()

    # --- state the server and the admin API read --------------------------------------------
    @property
    def policy_client(self) -> PolicyClient | None:
        """The LEARNED strategy's live policy client (``None``: none configured)."""
        slot = self.decider.policies.live
        return slot.inner if slot is not None else None

    @property
    def policies(self) -> LivePolicies:
        """The live / canary versions of the LEARNED strategy (hot swap, canary, rollback)."""
        return self.decider.policies

    @property
    def shadow_client(self) -> PolicyClient | None:
        """The shadow's own candidate policy (``None``: none)."""
        return self.decider.shadow_client

    @property
    def kill_switch_active(self) -> bool:
        """Whether the kill switch is on."""
        return self.decider.kill_switch_active

    @property
    def kill_switch_reason(self) -> str | None:
        """Why the kill switch is on."""
        return self.decider.kill_switch_reason

    @property
    def ab_percentage(self) -> float:
        """Current A/B share (0-100) of the candidate strategy."""
        return self.decider.ab_percentage

    @property
    def emergency_cloud_count(self) -> int:
        """Emergency cloud attempts since start."""
        return self.chain.emergency_cloud_count

    def set_kill_switch(self, active: bool, reason: str | None = None) -> None:
        """Turn the kill switch on (every strategy but explicit models -> QUALITY_OPTIMIZED) or off."""
        self.decider.set_kill_switch(active, reason)

    def set_rollout_percentage(self, percentage: float) -> None:
        """Change the A/B share of the candidate strategy at runtime (0-100)."""
        self.decider.set_rollout_percentage(percentage)

    def budget_state(self) -> dict[str, Any]:
        """Global spend / reservations of the current UTC day and month (admin state)."""
        b = self.budget
        return {
            "spent_daily_usd": b.spent(), "reserved_daily_usd": b.reserved(),
            "spent_monthly_usd": b.spent(period="monthly"), "reserved_monthly_usd": b.reserved(period="monthly"),
            "ledger": str(b.ledger.path) if b.ledger is not None else None,
            "recovered_unsettled_reservations": b.recovered_unsettled,
        }

    def breaker_states(self) -> dict[str, str]:
        """Provider -> breaker state."""
        return {n: b.state.value for n, b in self.breakers.items()}

    def _open_models(self) -> frozenset[str]:
        return frozenset(m for m, p in self.model_provider.items() if self.breakers[p].state == BreakerState.OPEN)

    def _on_breaker_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.metrics.set_breaker(name, new.value)
        log.warning("circuit breaker %s: %s -> %s", name, old.value, new.value)

    def strategies(self) -> list[Strategy]:
        """Strategies this router can serve (``learned`` only with a configured policy)."""
        return self.decider.strategies()

    def models_list(self) -> list[dict[str, Any]]:
        """Entries of ``GET /v1/models`` (strategies first, then concrete models)."""
        out = [{"id": AUTO, "object": "model", "owned_by": "router-rl"}]
        out += [{"id": PREFIX + s.value, "object": "model", "owned_by": "router-rl"} for s in self.strategies()]
        out += [
            {"id": m, "object": "model", "owned_by": self.model_provider[m], "location": self.catalog[m].location}
            for m in self.table.models
        ]
        return out

    def estimate_cost(self, prompt: str, max_tokens: int | None, model: str) -> float:
        """Expected USD of one call (what a budget reservation holds); see :meth:`ChainWalker.estimate_cost`."""
        return self.chain.estimate_cost(prompt, max_tokens, model)

    # --- one request ------------------------------------------------------------------------
    async def _context(self, inp: RouteInput) -> RequestContext:
        t0 = self._clock()
        if not inp.messages:
            raise RouterRequestError("messages: expected a non-empty list", param="messages")
        screen = await self.screener.screen(inp)
        inp = screen.inp
        if screen.sensitive:
            self.metrics.sensitive.inc()
        agent = inp.agent_id or "anonymous"
        return RequestContext(
            inp=inp,
            request_id=inp.request_id or uuid.uuid4().hex,
            agent_id=agent,
            prompt=inp.prompt_text,
            level=screen.level,
            sensitive=screen.sensitive,
            budget=self.budget.check(agent),
            t0=t0,
            flagged=screen.flagged,
        )

    def _apply_budget(self, ctx: RequestContext) -> None:
        if not ctx.budget.exhausted:
            return
        behaviour = self.budget.behaviour
        ctx.budget_counted = True
        self.metrics.budget_exhausted.labels(scope=ctx.budget.scope or "?", behaviour=behaviour.value).inc()
        log.warning(
            "ALERT budget exhausted: %s spent %.4f of %.4f USD (behaviour %s, request %s)",
            ctx.budget.scope, ctx.budget.spent_usd, ctx.budget.limit_usd, behaviour.value, ctx.request_id,
        )
        if behaviour == ExhaustedBehaviour.REJECT:
            raise BudgetExhaustedError(
                f"budget {ctx.budget.scope} exhausted ({ctx.budget.spent_usd:.4f} of {ctx.budget.limit_usd:.4f} USD)"
            )

    async def _serve(
        self, inp: RouteInput, execute: Callable[[RequestContext, RoutingDecision], Awaitable[_T]]
    ) -> tuple[RequestContext, RoutingDecision, _T]:
        """Screen, decide and ``execute`` one request; a failure still gets its decision-log row."""
        ctx = await self._context(inp)
        self.accounting.start_span(ctx)
        d: RoutingDecision | None = None
        try:
            d = await self.decider.decide(ctx)
            await self.encoding.attach(ctx, d)
            self._apply_budget(ctx)
            return ctx, d, await execute(ctx, d)
        except RouterRequestError as e:
            self.accounting.finish(ctx, d, error=e.code or type(e).__name__)
            e.request_id = ctx.request_id  # the error answer names the logged request
            raise
        except BaseException as e:  # a bug or a cancelled request still gets its decision-log row
            self.accounting.finish(ctx, d, error=f"internal:{type(e).__name__}")
            raise

    def record_rejected(self, error: str, *, request_id: str | None = None) -> str:
        """Log a decision-log row for a request refused before routing (bad body, bad token).

        The row has ``strategy`` ``rejected``, no served model and ``error`` set; a caller's request
        id is kept unless it looks like a secret. Returns the logged request id.
        """
        rid = request_id if request_id and not self.screener.text_is_sensitive(request_id) else uuid.uuid4().hex
        inp = RouteInput(messages=[], request_id=rid)
        ctx = RequestContext(inp=inp, request_id=rid, agent_id="anonymous", prompt="", level=0, sensitive=False,
                             budget=BudgetStatus(False), t0=self._clock())
        self.accounting.finish(ctx, None, error=error)
        return rid

    async def route(self, inp: RouteInput) -> RouteResult:
        """Decide, call the provider (with fallbacks) and log one non-streaming request.

        Raises:
            RouterRequestError: unknown model (404), budget reject (429), nothing could serve (503).
        """
        ctx, d, (res, served, reason) = await self._serve(inp, self.chain.complete)
        first_usage, run = res.usage, None
        if self.refiner is not None and self.refiner.applies(ctx, served):
            t_refine = self._clock()
            try:
                run = await self.refiner.run(ctx, d, res, served,
                                             self.accounting.call_cost(served, res.usage, res.latency_s))
            except BaseException as e:  # cancelled, or a bug: the request still gets its row
                self.accounting.finish(ctx, d, served=served, fallback_reason=reason, usage=res.usage,
                                       latency_s=res.latency_s, error=f"internal:{type(e).__name__}")
                raise
            finally:
                ctx.backend_s += self._clock() - t_refine
            total_usage = Usage(first_usage.input_tokens + run.extra_input_tokens,
                                first_usage.output_tokens + run.extra_output_tokens, estimated=first_usage.estimated)
            res = dataclasses.replace(res, content=run.text, model=run.model, usage=total_usage)
        # the first call's usage: ``finish`` prices it and adds what refinement spent
        cost = self.accounting.finish(ctx, d, served=served, fallback_reason=reason, usage=first_usage,
                                      latency_s=res.latency_s, refine=run, response=res.content)
        total = self._clock() - ctx.t0
        return RouteResult(ctx.request_id, d, res, served, reason, cost, max(0.0, total - ctx.backend_s), total,
                           refine=run)

    async def route_stream(self, inp: RouteInput) -> StreamSession:
        """Decide and open a stream, failing over until some model produced its first token.

        Raises:
            RouterRequestError: as :meth:`route`; after this returns, failures are reported
                through the session (an error event), never by truncating silently.
        """
        _, _, session = await self._serve(inp, self._open_stream)
        return session

    async def _open_stream(self, ctx: RequestContext, d: RoutingDecision) -> StreamSession:
        keep_text = not ctx.sensitive and self.config.logging.log_response(ctx.inp.agent_type)

        async def attempt(model: str, breaker: CircuitBreaker, span: Span, t: float) -> StreamSession:
            agen = self.chain.provider_for(model).stream(self.chain.request_for(ctx, model))
            head: list[StreamChunk] = []
            try:  # fail over only until the first token (or finish/usage) has arrived
                async for chunk in agen:
                    head.append(chunk)
                    if chunk.delta or chunk.finish_reason or chunk.usage:
                        break
            except BaseException:  # a provider error, or cancelled (lost a hedge race)
                await aclose_quietly(agen)
                raise

            def on_end(session: StreamSession, end: StreamEnd) -> Usage | None:
                ctx.backend_s += end.duration_s
                usage = end.usage
                if end.finished:
                    self.chain.record_success(model, breaker, end.duration_s)
                    if usage is None:
                        usage = Usage(self.chain.provider_for(model).count_tokens(ctx.prompt),
                                      max(1, end.text_chars // 4) if end.text_chars else 0, estimated=True)
                    end_span(span, model=model, usage=usage)
                else:
                    if end.broken:
                        self.metrics.stream_errors.labels(phase="after_first_token").inc()
                        breaker.record_failure()
                    else:
                        breaker.release()
                    end_span(span, error=end.error)
                self.accounting.finish(ctx, d, served=model, fallback_reason=session.fallback_reason, usage=usage,
                                       latency_s=end.duration_s, error=end.error, response=end.text)
                return usage

            def on_discard() -> None:
                breaker.release()
                span.end()

            return StreamSession(request_id=ctx.request_id, decision=d, model=model, agen=agen, head=head,
                                 clock=self._clock, t_start=t, on_end=on_end, on_discard=on_discard,
                                 keep_text=keep_text)

        async def discard(session: StreamSession) -> None:
            await session.discard()

        session, _, reason = await self.chain.walk(ctx, d, attempt, stream=True, discard=discard)
        session.fallback_reason = reason
        return session
