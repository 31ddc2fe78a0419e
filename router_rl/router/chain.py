"""The fallback chain walker: local-first attempts, hedging, breakers, budget gates, emergency cloud.

:meth:`ChainWalker.walk` tries the chosen model, then the other allowed local models (best
first), then, on the configured triggers, an emergency cloud chain; ``attempt`` makes one provider
call (a completion, or a stream up to its first token), the walker does the rest: the breaker
check, the budget reservation, the privacy guard, spans of failed attempts, failure accounting and
hedged attempts (:func:`router_rl.router.hedging.race`).

Invariant: a request flagged sensitive is only ever sent to local models; :meth:`ChainWalker.guard`
re-checks it before every call (:class:`~router_rl.router.errors.PrivacyGuardError`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from router_rl.core.errors import RouterRLError
from router_rl.providers.base import (
    CompletionRequest,
    CompletionResult,
    Provider,
    ProviderError,
    ProviderErrorKind,
)
from router_rl.router.accounting import Accounting, end_span, error_kind
from router_rl.router.breaker import CircuitBreaker
from router_rl.router.budget import BudgetTracker, ExhaustedBehaviour, Reservation
from router_rl.router.config import RouterConfig
from router_rl.router.errors import BudgetExhaustedError, NoProviderAvailableError, PrivacyGuardError
from router_rl.router.hedging import HedgeBudget, race
from router_rl.router.request import RequestContext, RoutingDecision
from router_rl.router.strategies import ModelTable
from router_rl.router.telemetry import RouterMetrics

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("router_rl.router")
_T = TypeVar("_T")

#: Provider error kinds that say nothing about the provider's health (not counted by breakers).
CLIENT_SIDE_KINDS = frozenset(
    {ProviderErrorKind.HTTP_4XX, ProviderErrorKind.CONTEXT_TOO_LONG, ProviderErrorKind.UNSUPPORTED}
)
LATENCY_EWMA = 0.2

class CallSkipped(RouterRLError):
    """:meth:`ChainWalker.call` did not call the model: its breaker is open or the budget skips it.

    Attributes:
        reason: ``breaker_open`` or ``budget_exhausted``.
    """

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"{model}: not called ({reason})")


#: ``attempt(model, breaker, span, t_start)``: one provider call; raises ProviderError on failure.
Attempt = Callable[[str, CircuitBreaker, "Span", float], Awaitable[_T]]


class ChainWalker:
    """Executes a decision over the fallback chain; keeps the fleet's health state.

    Args:
        config: Validated configuration.
        table: Model facts (locations, quality order, latency estimates refined here).
        providers: Provider by name.
        model_provider: Model id -> provider name.
        breakers: One circuit breaker per provider.
        budget: Budget tracker (reservations are made here).
        metrics: Metrics holder.
        accounting: Spans of the attempts.
        clock: Monotonic clock.
    """

    def __init__(
        self,
        config: RouterConfig,
        table: ModelTable,
        providers: Mapping[str, Provider],
        model_provider: Mapping[str, str],
        breakers: Mapping[str, CircuitBreaker],
        budget: BudgetTracker,
        metrics: RouterMetrics,
        accounting: Accounting,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.table = table
        self.providers = providers
        self.model_provider = model_provider
        self.breakers = breakers
        self.budget = budget
        self.metrics = metrics
        self.accounting = accounting
        self._clock = clock
        self.consecutive_local_failures = 0
        self.emergency_cloud_count = 0
        self.losers: set[asyncio.Future[Any]] = set()  # hedge losers still running
        self._hedge_budget = HedgeBudget(config.fallback.hedge_budget, config.fallback.hedge_burst)

    async def aclose(self) -> None:
        """Cancel the hedge losers still running and wait for them."""
        for fut in list(self.losers):
            fut.cancel()
        if self.losers:
            await asyncio.gather(*self.losers, return_exceptions=True)

    # --- one attempt ------------------------------------------------------------------------
    def estimate_cost(self, prompt: str, max_tokens: int | None, model: str) -> float:
        """Expected USD of one call (what a budget reservation holds).

        Prompt tokens (the provider's counter) at the model's input price plus ``max_tokens``
        (or ``budgets.default_output_tokens``) at its output price.
        """
        prov = self.providers[self.model_provider[model]]
        out_tokens = max_tokens or self.config.budgets.default_output_tokens
        return float(self.table.catalog[model].cost(prov.count_tokens(prompt, model), out_tokens))

    def reserve(self, ctx: RequestContext, model: str) -> Reservation | bool:
        """Reserve the call's expected cost; ``False`` = skip this model; raises for ``reject``.

        ``True`` means nothing to reserve (no limits and no ledger).
        """
        if not self.config.budgets.has_limits and self.budget.ledger is None:
            return True
        est = self.estimate_cost(ctx.prompt, ctx.inp.max_tokens, model)
        got = self.budget.reserve(ctx.agent_id, est)
        if isinstance(got, Reservation):
            self.metrics.budget_reservations.labels(outcome="admitted").inc()
            return got
        behaviour = self.budget.behaviour
        if not ctx.budget_counted:  # once per request
            ctx.budget_counted = True
            self.metrics.budget_exhausted.labels(scope=got.scope or "?", behaviour=behaviour.value).inc()
        if behaviour == ExhaustedBehaviour.REJECT:
            self.metrics.budget_reservations.labels(outcome="rejected").inc()
            raise BudgetExhaustedError(
                f"budget {got.scope} exhausted: {got.spent_usd:.6f} of {got.limit_usd:.6f} USD spent or reserved, "
                f"this call needs {est:.6f}"
            )
        if behaviour == ExhaustedBehaviour.LOCAL_ONLY and not self.table.local[model]:
            self.metrics.budget_reservations.labels(outcome="skipped").inc()
            return False
        if behaviour == ExhaustedBehaviour.ALLOW_AND_ALERT:
            log.warning("ALERT budget %s exceeded by request %s (allow_and_alert)", got.scope, ctx.request_id)
        self.metrics.budget_reservations.labels(outcome="forced").inc()
        forced = self.budget.reserve(ctx.agent_id, est, force=True)
        assert isinstance(forced, Reservation)  # force=True always admits
        return forced

    def request_for(self, ctx: RequestContext, model: str) -> CompletionRequest:
        """The provider request of one attempt (local attempts bounded by ``latency_threshold_s``)."""
        pname = self.model_provider[model]
        timeout = None
        if self.table.local[model]:
            timeout = min(self.config.fallback.latency_threshold_s, self.providers[pname].config.timeout_s)
        return CompletionRequest(
            model=model,
            messages=[{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                      for m in ctx.inp.messages],
            max_tokens=ctx.inp.max_tokens,
            temperature=ctx.inp.temperature,
            stop=ctx.inp.stop,
            timeout_s=timeout,
            extra={**ctx.inp.params, "headers": {"x-request-id": ctx.request_id}},
        )

    def provider_for(self, model: str) -> Provider:
        """The provider serving ``model``."""
        return self.providers[self.model_provider[model]]

    def guard(self, ctx: RequestContext, model: str) -> None:
        """Refuse to send a sensitive request to a cloud model (defence in depth: planning already masks cloud).

        Raises:
            PrivacyGuardError: ``ctx`` is sensitive and ``model`` is a cloud model.
        """
        if ctx.sensitive and not self.table.local[model]:
            raise PrivacyGuardError(f"refusing to send sensitive request {ctx.request_id} to cloud model {model}")

    def gate(self, ctx: RequestContext, model: str) -> tuple[CircuitBreaker, Reservation | None] | str:
        """Take ``model``'s breaker slot and budget reservation, or say why the attempt is skipped.

        A refused attempt is recorded in ``ctx.attempts``; a breaker slot taken for a refused
        reservation is released.

        Returns:
            ``(breaker, reservation)`` (``reservation`` is ``None`` when the budget holds nothing),
            or the skip reason: ``"breaker_open"`` or ``"budget_exhausted"``.

        Raises:
            BudgetExhaustedError: the budget refuses (behaviour ``reject``).
        """
        breaker = self.breakers[self.model_provider[model]]
        if not breaker.allow():
            ctx.attempts.append(f"{model}:breaker_open")
            return "breaker_open"
        try:
            reservation = self.reserve(ctx, model)
        except BaseException:
            breaker.release()
            raise
        if reservation is False:
            breaker.release()
            ctx.attempts.append(f"{model}:budget_exhausted")
            return "budget_exhausted"
        return breaker, reservation if isinstance(reservation, Reservation) else None

    def record_failure(self, ctx: RequestContext, model: str, err: ProviderError, breaker: CircuitBreaker) -> None:
        """Count a failed attempt (its breaker, unless the failure is the client's; local failure streak)."""
        ctx.attempts.append(f"{model}:{err.kind.value}")
        if err.kind in CLIENT_SIDE_KINDS:
            breaker.release()
        else:
            breaker.record_failure()
            if self.table.local[model]:
                self.consecutive_local_failures += 1

    def record_success(self, model: str, breaker: CircuitBreaker, latency: float) -> None:
        """Count a successful attempt (its breaker, the local streak, the latency estimate)."""
        breaker.record_success()
        if self.table.local[model]:
            self.consecutive_local_failures = 0
        old = self.table.latency_s[model]
        self.table.latency_s[model] = (1 - LATENCY_EWMA) * old + LATENCY_EWMA * latency

    async def call(
        self,
        ctx: RequestContext,
        model: str,
        messages: list[dict[str, str]],
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[CompletionResult, float]:
        """One more non-streaming call for a served request (a refinement iteration, a self-check).

        The gates of a chain attempt apply: the privacy guard, the provider's breaker (a failure
        counts on it), the budget reservation (settled with the call's real cost, which is also
        counted in the cost metric). There is no fallback: the caller decides what a failure means.

        Args:
            ctx: The request.
            model: The model to call.
            messages: The conversation to send.
            timeout_s: Time left for the call (local calls also stay within ``latency_threshold_s``).
            headers: Extra HTTP headers of the call.

        Returns:
            ``(result, cost USD)``.

        Raises:
            ProviderError: the call failed.
            CallSkipped: the breaker is open, or the budget skips this model (``local_only``).
            BudgetExhaustedError: the budget refuses (behaviour ``reject``).
            PrivacyGuardError: a sensitive request and a cloud model.
        """
        self.guard(ctx, model)
        gated = self.gate(ctx, model)
        if isinstance(gated, str):
            raise CallSkipped(model, gated)
        breaker, held = gated
        base = self.request_for(ctx, model)
        timeout = min(timeout_s, base.timeout_s) if base.timeout_s is not None else timeout_s
        extra = {**base.extra, "headers": {**base.extra.get("headers", {}), **(headers or {})}}
        req = dataclasses.replace(base, messages=messages, timeout_s=timeout, extra=extra)
        span = self.accounting.attempt_span(ctx, model, stream=False)
        t = self._clock()
        try:
            res = await self.provider_for(model).complete(req)
        except ProviderError as e:
            end_span(span, error=error_kind(e))
            self.record_failure(ctx, model, e, breaker)
            if held is not None:
                self.budget.settle(held, 0.0)
            raise
        except asyncio.CancelledError as e:
            end_span(span, error=error_kind(e))
            breaker.release()
            if held is not None:  # an interrupted call may have been billed: keep its reservation
                self.budget.settle(held, held.usd)
            raise
        self.record_success(model, breaker, self._clock() - t)
        end_span(span, model=res.model or model, usage=res.usage)
        cost = self.accounting.call_cost(model, res.usage, res.latency_s)
        if held is not None:
            self.budget.settle(held, cost)
        else:
            self.budget.record(ctx.agent_id, cost)
        self.metrics.cost.labels(model=model).inc(cost)
        return res, cost

    # --- the chain --------------------------------------------------------------------------
    def chains(self, d: RoutingDecision) -> tuple[list[str], list[str]]:
        """(primary chain, emergency cloud candidates), local-first."""
        q = self.table.quality_order
        locals_ = [m for m in q if self.table.local[m] and m in d.allowed and m != d.chosen]
        clouds = [m for m in q if not self.table.local[m] and m in d.allowed and m != d.chosen]
        if self.table.local[d.chosen]:
            return [d.chosen, *locals_], clouds
        return [d.chosen, *locals_, *clouds], []

    def _background_loser(self, fut: asyncio.Future[Any], discard: Callable[[Any], Awaitable[None]] | None) -> None:
        """Keep a hedge loser referenced until it ends; close its result if it still succeeds."""
        self.losers.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self.losers.discard(f)
            if f.cancelled() or f.exception() is not None:
                return
            r = f.result()
            if r is not None and discard is not None:
                task = asyncio.ensure_future(discard(r))
                self.losers.add(task)
                task.add_done_callback(self.losers.discard)

        fut.add_done_callback(done)

    def emergency_trigger(self, ctx: RequestContext, d: RoutingDecision, slow_failure: bool) -> str | None:
        """Why the emergency-cloud rules allow a cloud model for this request now (``None``: they do not)."""
        fb = self.config.fallback
        if not fb.emergency_cloud or ctx.sensitive:
            return None
        if self.consecutive_local_failures >= fb.consecutive_local_failures:
            return "consecutive_local_failures"
        if slow_failure:
            return "latency"
        if d.confidence < fb.min_confidence:
            return "low_confidence"
        return None

    async def complete(self, ctx: RequestContext, d: RoutingDecision) -> tuple[CompletionResult, str, str | None]:
        """Serve a non-streaming request over the chain: ``(result, served model, fallback reason)``."""
        async def attempt(model: str, breaker: CircuitBreaker, span: Span, t: float) -> CompletionResult:
            res = await self.provider_for(model).complete(self.request_for(ctx, model))
            dt = self._clock() - t
            end_span(span, model=res.model or model, usage=res.usage)
            self.record_success(model, breaker, dt)
            return res

        return await self.walk(ctx, d, attempt, stream=False)

    async def walk(
        self,
        ctx: RequestContext,
        d: RoutingDecision,
        attempt: Attempt[_T],
        *,
        stream: bool,
        discard: Callable[[_T], Awaitable[None]] | None = None,
    ) -> tuple[_T, str, str | None]:
        """Try the local-first chain, then (on the seed's triggers) the emergency cloud chain.

        With ``fallback.hedge_after_s`` set, an attempt that has not answered (non-stream: the
        whole answer; stream: its first token) after that long gets the next candidate started
        alongside it; the first success wins. A losing attempt is not cancelled: it runs on in
        the background until it answers or hits its own timeout, and that true outcome feeds its
        breaker (a stalled backend times out and soon has its breaker open, so it is skipped
        outright; a merely slow one records a success). ``discard`` closes a success nobody uses
        (a losing stream's session).

        ``attempt(model, breaker, span, t_start)`` makes one call and returns its result, raising
        :class:`ProviderError` on failure; the walker does the breaker check, attempt budget,
        span/breaker/failure bookkeeping and fallback accounting shared by both request kinds.

        Returns:
            ``(result, served model, fallback reason or None)``.

        Raises:
            NoProviderAvailableError: no model of the chain answered.
            BudgetExhaustedError: a reservation was refused (behaviour ``reject``).
            PrivacyGuardError: see :meth:`guard`.
        """
        primary, emergency = self.chains(d)
        fb = self.config.fallback
        first_reason: str | None = None
        slow_failure = False
        n_attempts = 0

        def admit(model: str) -> tuple[CircuitBreaker, Reservation | None] | None:
            """Synchronous gate of one attempt: breaker, budget reservation, privacy guard."""
            nonlocal first_reason
            gated = self.gate(ctx, model)
            if isinstance(gated, str):
                first_reason = first_reason or gated
                return None
            self.guard(ctx, model)
            return gated

        async def try_model(model: str, breaker: CircuitBreaker, reservation: Reservation | None) -> _T | None:
            nonlocal first_reason, slow_failure
            span = self.accounting.attempt_span(ctx, model, stream=stream)
            t = self._clock()
            try:
                res = await attempt(model, breaker, span, t)
            except ProviderError as e:
                dt = self._clock() - t
                end_span(span, error=error_kind(e))
                self.record_failure(ctx, model, e, breaker)
                if reservation is not None:
                    self.budget.settle(reservation, 0.0)
                first_reason = first_reason or e.kind.value
                if self.table.local[model] and (e.kind == ProviderErrorKind.TIMEOUT or dt >= fb.latency_threshold_s):
                    slow_failure = True
                log.info("request %s: %s failed (%s)", ctx.request_id, model, e.kind.value)
                return None
            except asyncio.CancelledError as e:  # the request itself was cancelled (client gone, shutdown)
                end_span(span, error=error_kind(e))
                ctx.attempts.append(f"{model}:cancelled")
                breaker.release()
                if reservation is not None:  # an interrupted call may have been billed: keep its reservation
                    self.budget.settle(reservation, reservation.usd)
                raise
            if ctx.done:  # a hedge loser that answered after the request was served: only its health counts
                if reservation is not None:  # its cost is counted at the reservation (conservative)
                    self.budget.settle(reservation, reservation.usd)
                return res
            ctx.reservation = reservation
            return res

        async def run(models: list[str], limit: int, alert: str | None) -> tuple[_T, str] | None:
            """The chain as a hedged race (:func:`router_rl.router.hedging.race`)."""
            queue = list(models)

            def start_next() -> tuple[str, Awaitable[_T | None]] | None:
                nonlocal n_attempts
                while queue and n_attempts < limit:
                    model = queue.pop(0)
                    gate = admit(model)
                    if gate is None:
                        continue
                    n_attempts += 1
                    if alert is not None:
                        self.metrics.emergency_cloud.labels(reason=alert).inc()
                        self.emergency_cloud_count += 1
                        log.warning("ALERT emergency cloud fallback to %s (trigger %s, request %s, attempts %s)",
                                    model, alert, ctx.request_id, ctx.attempts)
                    return model, try_model(model, *gate)
                return None

            def on_loser(model: str, fut: asyncio.Future[_T | None]) -> None:  # finishes in the background
                ctx.attempts.append(f"{model}:hedge_lost")
                self._background_loser(fut, discard)

            got = await race(start_next, hedge_after_s=fb.hedge_after_s, max_hedges=fb.max_hedges,
                             budget=self._hedge_budget, on_hedge=lambda m: self.metrics.hedges.labels(model=m).inc(),
                             on_loser=on_loser, discard=discard)
            if got is not None:
                ctx.done = True
            return got

        # backend time = wall time spent waiting on provider attempts (hedged ones overlap)
        self._hedge_budget.on_request()
        t_chain = self._clock()
        try:
            got = await run(primary, fb.max_attempts, None)
            if got is not None:
                return got[0], got[1], (None if got[1] == d.chosen else first_reason)
            trigger = self.emergency_trigger(ctx, d, slow_failure) if emergency else None
            if trigger is not None:
                got = await run(emergency, fb.max_attempts + 1, trigger)
                if got is not None:
                    return got[0], got[1], f"emergency_cloud:{trigger}"
        finally:
            ctx.backend_s += self._clock() - t_chain
        raise NoProviderAvailableError(
            f"no model could serve request {ctx.request_id}; attempts: {', '.join(ctx.attempts) or 'none'}"
            + (" (sensitive request: local models only)" if ctx.sensitive else "")
        )
