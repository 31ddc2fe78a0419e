"""The live hybrid router: decide, execute with fallbacks, account, log.

One :class:`HybridRouter` owns the providers, one circuit breaker per provider, the budget
tracker, the rollout state (shadow, A/B, kill switch), Prometheus metrics, OpenTelemetry spans
and the decision log. :meth:`HybridRouter.route` serves a non-streaming request;
:meth:`HybridRouter.route_stream` a streaming one.

Invariants:

* A request flagged sensitive (secrets / PII) is only ever sent to local models, including on
  every fallback path (the provider call itself re-checks it).
* Every request produces exactly one decision-log row (also rejected and failed ones).
* The logged ``action_probs`` is the distribution the executed decision was drawn from, after
  privacy / budget masks, so ``propensity`` is valid for off-policy evaluation.

Size: this file is over 500 lines because decision, execution and bookkeeping still share one
request context; splitting it is planned separately. New concepts live in their own modules:
screening (:mod:`router_rl.router.screening`), budget reservations and the spend ledger
(:mod:`~router_rl.router.budget`, :mod:`~router_rl.router.ledger`), hedged attempts
(:mod:`~router_rl.router.hedging`), request validation (:mod:`~router_rl.router.validation`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from router_rl.core.errors import ConfigError, RouterRLError
from router_rl.providers.base import (
    CompletionRequest,
    CompletionResult,
    Provider,
    ProviderError,
    ProviderErrorKind,
    StreamChunk,
    Usage,
    build_providers,
)
from router_rl.router.breaker import BreakerState, CircuitBreaker
from router_rl.router.budget import BudgetStatus, BudgetTracker, ExhaustedBehaviour, Reservation
from router_rl.router.config import COMPLEXITY_LEVELS, RouterConfig, Strategy
from router_rl.traces.decision_log import DecisionLogWriter
from router_rl.router.hedging import HedgeBudget, race
from router_rl.router.policy_client import (
    HTTPPolicyClient,
    InProcessPolicyClient,
    PolicyClient,
    PolicyClientError,
    task_record,
)
from router_rl.router.policy_state import PolicyStateTracker
from router_rl.router.screening import RequestScreener
from router_rl.router.strategies import ModelTable, rule_choice
from router_rl.router.telemetry import RouterMetrics, get_tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

log = logging.getLogger("router_rl.router")
_T = TypeVar("_T")

AUTO = "router-rl/auto"
PREFIX = "router-rl/"
#: Provider error kinds that say nothing about the provider's health (not counted by breakers).
CLIENT_SIDE_KINDS = frozenset(
    {ProviderErrorKind.HTTP_4XX, ProviderErrorKind.CONTEXT_TOO_LONG, ProviderErrorKind.UNSUPPORTED}
)
GEN_AI_SYSTEM = {"openai_compatible": "openai", "ollama": "ollama", "anthropic": "anthropic"}
LATENCY_EWMA = 0.2


# --- errors the server maps to HTTP ------------------------------------------------------------
class RouterRequestError(RouterRLError):
    """A request the router refuses or cannot serve; carries an HTTP status and an OpenAI error type.

    Messages never contain prompt text or secrets.
    """

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class UnknownModelError(RouterRequestError):
    """The requested model / strategy does not exist."""

    status = 404
    code = "model_not_found"


class BudgetExhaustedError(RouterRequestError):
    """A budget is exhausted and the configured behaviour is ``reject``."""

    status = 429
    type = "insufficient_quota"
    code = "budget_exhausted"


class NoProviderAvailableError(RouterRequestError):
    """Every model of the fallback chain failed or was unavailable."""

    status = 503
    type = "service_unavailable"
    code = "no_provider_available"


# --- request / decision / result ----------------------------------------------------------------
@dataclass
class RouteInput:
    """One request to route.

    Attributes:
        messages: OpenAI-style chat messages.
        model: ``router-rl/auto``, ``router-rl/<strategy>`` or a concrete model id.
        request_id: Caller's id (generated when missing); keys sampling and A/B stickiness.
        agent_id: Calling agent (budgets, A/B stickiness).
        agent_type: Agent type (a policy feature).
        category: Task category (a policy feature).
        max_tokens: Requested output tokens.
        temperature: Sampling temperature forwarded to the model.
        stop: Stop sequences.
        params: Other sampling fields forwarded unchanged to the chosen model (``top_p``, ``seed``...).
        metadata: The request's ``metadata`` object (scanned for secrets, never forwarded).
    """

    messages: list[dict[str, str]]
    model: str = AUTO
    request_id: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    category: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """All message contents joined by newlines."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class Decision:
    """What the router decided for one request (before execution)."""

    strategy: str
    policy_version: str
    models: tuple[str, ...]
    probs: tuple[float, ...]
    chosen: str
    propensity: float
    confidence: float
    allowed: tuple[str, ...]
    features: tuple[float, ...] | None = None
    shadow_model: str | None = None
    note: str | None = None  # e.g. "policy_timeout" when the rule policy answered for LEARNED
    policy_state: str | None = None  # JSON RouterState sent to the learned policy (None: none sent)
    decided_by: str = ""  # the policy that produced probs: "learned", a rule strategy or "explicit"

    def __post_init__(self) -> None:
        if not self.decided_by:
            self.decided_by = self.strategy


@dataclass
class _Ctx:
    inp: RouteInput
    request_id: str
    agent_id: str
    prompt: str
    level: int
    sensitive: bool
    budget: BudgetStatus
    t0: float
    flagged: tuple[str, ...] = ()
    reservation: Reservation | None = None
    budget_counted: bool = False
    done: bool = False  # a winner was chosen: late hedge losers only update health
    backend_s: float = 0.0
    attempts: list[str] = field(default_factory=list)
    span: Span | None = None


@dataclass
class RouteResult:
    """A served request.

    Attributes:
        request_id: Request id.
        decision: The routing decision.
        result: The provider's completion.
        served_model: Model that answered (differs from ``decision.chosen`` after a fallback).
        fallback_reason: Why the chosen model did not answer (``None`` without fallback).
        cost_usd: Cost of the served call.
        overhead_s: Router time excluding provider calls.
        total_s: Router time including provider calls.
    """

    request_id: str
    decision: Decision
    result: CompletionResult
    served_model: str
    fallback_reason: str | None
    cost_usd: float
    overhead_s: float
    total_s: float

    @property
    def fallback_used(self) -> bool:
        """Whether a model other than the chosen one answered."""
        return self.served_model != self.decision.chosen


def _uniform(seed: int, *parts: str) -> float:
    """Deterministic uniform in (0, 1] from a seed and string parts."""
    h = hashlib.blake2b("|".join((str(seed), *parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(h, "big") + 1) / 2.0**64


def _sample(probs: Sequence[float], u: float) -> int:
    acc = 0.0
    last = max(i for i, p in enumerate(probs) if p > 0)
    for i, p in enumerate(probs):
        acc += p
        if p > 0 and acc >= u:
            return i
    return last


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
    ) -> None:
        import numpy as np

        self.config = config
        self.catalog = config.build_catalog()
        self._clock = clock
        self._wall = wall_clock
        self.providers = providers if providers is not None else build_providers(
            config.providers, catalog=self.catalog, rng=np.random.default_rng(config.seed)
        )
        missing = [p.name for p in config.providers if p.name not in self.providers]
        if missing:
            raise ConfigError("providers", f"no provider instance for {missing}")
        self.model_provider = {m: p.name for p in config.providers for m in p.model_ids}
        self.provider_kind = {p.name: p.kind for p in config.providers}
        self.table = ModelTable.from_config(config, self.catalog)
        self.metrics = metrics or RouterMetrics()
        self.tracer = get_tracer(tracer_provider)
        self.breakers = {
            p.name: CircuitBreaker(p.name, config.breaker, clock=clock, on_change=self._on_breaker_change)
            for p in config.providers
        }
        for name in self.breakers:
            self.metrics.set_breaker(name, BreakerState.CLOSED.value)
        self.budget = BudgetTracker(config.budgets, clock=wall_clock)
        self.policy_state = PolicyStateTracker(self.budget, self.breakers, self.table.local, wall_clock)
        lc = config.learned
        self.policy_client = policy_client if policy_client is not None else self._build_policy_client(
            lc.policy_dir, lc.endpoint, lc.timeout_s
        )
        self._check_policy_models(self.policy_client, "learned")
        sh = config.rollout.shadow
        self.shadow_client: PolicyClient | None = None
        if shadow_policy_client is not None:
            self.shadow_client = shadow_policy_client
        elif sh is not None and sh.has_policy:
            self.shadow_client = self._build_policy_client(sh.policy_dir, sh.endpoint, sh.timeout_s,
                                                           "rollout.shadow")
        self._check_policy_models(self.shadow_client, "rollout.shadow")
        if decision_log is None and config.logging.decision_log_dir is not None:
            decision_log = DecisionLogWriter(
                config.logging.decision_log_dir,
                batch_size=config.logging.batch_size,
                flush_interval_s=config.logging.flush_interval_s,
                log_prompts=config.logging.log_prompts,
            )
        self.decision_log = decision_log
        if sensitive_fn is None:
            from router_rl.features.privacy import is_sensitive

            sensitive_fn = is_sensitive
        self._is_sensitive = sensitive_fn
        self.screener = RequestScreener(sensitive_fn)
        self._version_prefix = f"rules@{config.fingerprint()}"
        self.kill_switch_active = False
        self.kill_switch_reason: str | None = None
        self.ab_percentage = config.rollout.percentage
        self.consecutive_local_failures = 0
        self.emergency_cloud_count = 0
        self._losers: set[asyncio.Future[Any]] = set()  # hedge losers still running
        self._hedge_budget = HedgeBudget(config.fallback.hedge_budget, config.fallback.hedge_burst)

    def _build_policy_client(
        self, policy_dir: Any = None, endpoint: str | None = None, timeout_s: float = 0.05, setting: str = "learned"
    ) -> PolicyClient | None:
        if policy_dir is not None:
            try:
                return InProcessPolicyClient.from_dir(policy_dir)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{setting}.policy_dir", str(e)) from None
        if endpoint is not None:
            return HTTPPolicyClient(endpoint, self.table.models, timeout_s=timeout_s)
        return None

    def _check_policy_models(self, client: PolicyClient | None, setting: str) -> None:
        if client is not None:
            unknown = [m for m in client.models if m not in self.table.models]
            if unknown:
                raise ConfigError(setting, f"the policy chooses among models the router does not serve: {unknown}")
            self.policy_state.check_supports(client.state_spec, setting=setting, policy=client.name)

    @classmethod
    def from_config(cls, config: RouterConfig, **kwargs: Any) -> HybridRouter:
        """Build a router and its providers from a config (keys are checked first)."""
        config.check_credentials()
        return cls(config, **kwargs)

    async def aclose(self) -> None:
        """Close providers, the policy client and flush the decision log."""
        for fut in list(self._losers):
            fut.cancel()
        if self._losers:
            await asyncio.gather(*self._losers, return_exceptions=True)
        for p in self.providers.values():
            await p.close()
        for client in (self.policy_client, self.shadow_client):
            if client is not None:
                await client.close()
        if self.decision_log is not None:
            self.decision_log.close()
        self.screener.close()
        self.budget.close()

    # --- admin ------------------------------------------------------------------------------
    def set_kill_switch(self, active: bool, reason: str | None = None) -> None:
        """Turn the kill switch on (every strategy but explicit models -> QUALITY_OPTIMIZED) or off."""
        self.kill_switch_active = bool(active)
        self.kill_switch_reason = reason if active else None
        log.warning("kill switch %s%s", "ON" if active else "OFF", f" ({reason})" if reason else "")

    def set_rollout_percentage(self, percentage: float) -> None:
        """Change the A/B share of the candidate strategy at runtime (0-100)."""
        if not 0 <= percentage <= 100:
            raise ValueError(f"rollout percentage: expected 0..100, got {percentage}")
        if percentage > 0 and self.config.rollout.candidate is None:
            raise ValueError("rollout percentage > 0 needs rollout.candidate in the config")
        self.ab_percentage = float(percentage)

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

    def _on_breaker_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.metrics.set_breaker(name, new.value)
        log.warning("circuit breaker %s: %s -> %s", name, old.value, new.value)

    def strategies(self) -> list[Strategy]:
        """Strategies this router can serve (``learned`` only with a configured policy)."""
        return [s for s in Strategy if s != Strategy.LEARNED or self.policy_client is not None]

    def models_list(self) -> list[dict[str, Any]]:
        """Entries of ``GET /v1/models`` (strategies first, then concrete models)."""
        out = [{"id": AUTO, "object": "model", "owned_by": "router-rl"}]
        out += [{"id": PREFIX + s.value, "object": "model", "owned_by": "router-rl"} for s in self.strategies()]
        out += [
            {"id": m, "object": "model", "owned_by": self.model_provider[m], "location": self.catalog[m].location}
            for m in self.table.models
        ]
        return out

    # --- decision ---------------------------------------------------------------------------
    def _resolve_requested(self, model: str) -> tuple[Strategy | None, str | None, bool]:
        """(strategy, concrete model, is_auto)."""
        if model == AUTO or model in ("", "auto"):
            return self.config.strategy, None, True
        if model.startswith(PREFIX):
            name = model[len(PREFIX):]
            try:
                strategy = Strategy(name)
            except ValueError:
                known = [AUTO] + [PREFIX + s.value for s in self.strategies()]
                raise UnknownModelError(f"unknown strategy model {model!r}; known: {known}", param="model") from None
            if strategy == Strategy.LEARNED and self.policy_client is None:
                raise UnknownModelError(
                    f"{model}: no learned policy is configured (set learned.policy_dir or learned.endpoint)",
                    param="model",
                )
            return strategy, None, False
        if model in self.model_provider:
            return None, model, False
        raise UnknownModelError(
            f"unknown model {model!r}; use {AUTO}, router-rl/<strategy> or one of {list(self.table.models)}",
            param="model",
        )

    def _one_hot(
        self, chosen: str, strategy: str, allowed: tuple[str, ...], note: str | None = None,
        decided_by: str | None = None,
    ) -> Decision:
        probs = tuple(1.0 if m == chosen else 0.0 for m in self.table.models)
        return Decision(
            strategy=strategy,
            decided_by=decided_by or strategy,
            policy_version=f"{self._version_prefix}:{decided_by or strategy}",
            models=self.table.models,
            probs=probs,
            chosen=chosen,
            propensity=1.0,
            confidence=1.0,
            allowed=allowed,
            note=note,
        )

    async def _decide_strategy(
        self,
        strategy: Strategy,
        ctx: _Ctx,
        allowed: tuple[str, ...],
        salt: str,
        client: PolicyClient | None = None,
    ) -> Decision:
        if strategy != Strategy.LEARNED:
            chosen = rule_choice(
                strategy, self.table, ctx.level, allowed, prompt_chars=len(ctx.prompt), max_tokens=ctx.inp.max_tokens
            )
            return self._one_hot(chosen, strategy.value, allowed)
        note: str | None
        state_json: str | None = None
        client = client or self.policy_client
        if client is None:
            note = "policy_unavailable"
        else:
            state = self.policy_state.snapshot() if client.wants_state else None
            state_json = state.model_dump_json() if state is not None else None
            try:
                record = task_record(ctx.prompt, ctx.inp.category, ctx.inp.agent_type, ctx.inp.max_tokens,
                                     len(ctx.inp.messages), state)
                ans = await asyncio.wait_for(client.distribution(record), self.config.learned.timeout_s * 2 + 0.05)
            except (PolicyClientError, TimeoutError) as e:
                reason = e.reason if isinstance(e, PolicyClientError) else "timeout"
                note = f"policy_{reason}"
                self.metrics.policy_errors.labels(reason=reason).inc()
                log.warning("learned policy failed (%s); rule policy answers request %s%s", reason, ctx.request_id,
                            f": {e}" if reason == "refused" else "")
            else:
                full = dict.fromkeys(self.table.models, 0.0)
                for m, p in zip(ans.models, ans.probs, strict=True):
                    full[m] = p
                masked = [full[m] if m in allowed else 0.0 for m in self.table.models]
                total = sum(masked)
                if total > 0:
                    probs = tuple(p / total for p in masked)
                    if self.config.learned.sample:
                        idx = _sample(probs, _uniform(self.config.seed, salt, ctx.request_id))
                    else:
                        idx = max(range(len(probs)), key=lambda i: probs[i])
                    return Decision(
                        strategy=Strategy.LEARNED.value,
                        policy_version=ans.version,
                        models=self.table.models,
                        probs=probs,
                        chosen=self.table.models[idx],
                        propensity=probs[idx],
                        confidence=max(probs),
                        allowed=allowed,
                        features=ans.features,
                        policy_state=state_json,
                    )
                note = "policy_masked"
        chosen = rule_choice(Strategy.BALANCED, self.table, ctx.level, allowed)
        d = self._one_hot(chosen, Strategy.LEARNED.value, allowed, note=note, decided_by=Strategy.BALANCED.value)
        d.policy_version = f"{self._version_prefix}:balanced(fallback)"
        d.policy_state = state_json
        return d

    async def _decide(self, ctx: _Ctx) -> Decision:
        strategy, concrete, is_auto = self._resolve_requested(ctx.inp.model)
        allowed = tuple(self.table.models)
        if ctx.sensitive or (ctx.budget.exhausted and self.budget.behaviour == ExhaustedBehaviour.LOCAL_ONLY):
            allowed = tuple(m for m in allowed if self.table.local[m])
            if not allowed:
                what = "sensitive request" if ctx.sensitive else "exhausted budget (local_only)"
                raise NoProviderAvailableError(f"{what}: no local model is configured")
        if concrete is not None:
            if concrete in allowed:
                return self._one_hot(concrete, "explicit", allowed)
            # a sensitive (or local-only) request asked for a cloud model: serve it locally
            chosen = rule_choice(Strategy.PRIVACY_FIRST, self.table, ctx.level, allowed)
            reason = "privacy_override" if ctx.sensitive else "budget_local_only"
            return self._one_hot(chosen, "explicit", allowed, note=reason, decided_by=Strategy.PRIVACY_FIRST.value)
        assert strategy is not None
        if self.kill_switch_active:
            d = await self._decide_strategy(Strategy.QUALITY_OPTIMIZED, ctx, allowed, "act")
            d.strategy = strategy.value  # requested; decided_by stays quality_optimized
            d.note = "kill_switch"
            return d
        ro = self.config.rollout
        if is_auto and self.ab_percentage > 0 and ro.candidate is not None:
            key = ctx.agent_id if ro.sticky_by == "agent" and ctx.inp.agent_id else ctx.request_id
            if _uniform(ro.seed, "ab", key) <= self.ab_percentage / 100.0:
                strategy = ro.candidate
        if ro.shadow is not None:
            d, shadow = await asyncio.gather(
                self._decide_strategy(strategy, ctx, allowed, "act"),
                self._decide_strategy(ro.shadow.strategy, ctx, allowed, "shadow", self.shadow_client),
            )
            d.shadow_model = shadow.chosen
            self.metrics.shadow.labels(agree=str(shadow.chosen == d.chosen).lower()).inc()
            return d
        return await self._decide_strategy(strategy, ctx, allowed, "act")

    # --- context ----------------------------------------------------------------------------
    async def _context(self, inp: RouteInput) -> _Ctx:
        t0 = self._clock()
        if not inp.messages:
            raise RouterRequestError("messages: expected a non-empty list", param="messages")
        screen = await self.screener.screen(inp)
        inp = screen.inp
        if screen.sensitive:
            self.metrics.sensitive.inc()
        agent = inp.agent_id or "anonymous"
        return _Ctx(
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

    def _apply_budget(self, ctx: _Ctx) -> None:
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

    # --- execution --------------------------------------------------------------------------
    def estimate_cost(self, prompt: str, max_tokens: int | None, model: str) -> float:
        """Expected USD of one call (what a budget reservation holds).

        Prompt tokens (the provider's counter) at the model's input price plus ``max_tokens``
        (or ``budgets.default_output_tokens``) at its output price.
        """
        prov = self.providers[self.model_provider[model]]
        out_tokens = max_tokens or self.config.budgets.default_output_tokens
        return float(self.catalog[model].cost(prov.count_tokens(prompt, model), out_tokens))

    def _estimate_cost(self, ctx: _Ctx, model: str) -> float:
        return self.estimate_cost(ctx.prompt, ctx.inp.max_tokens, model)

    def _reserve(self, ctx: _Ctx, model: str) -> Reservation | bool:
        """Reserve the call's expected cost; ``False`` = skip this model; raises for ``reject``.

        ``True`` means nothing to reserve (no limits and no ledger).
        """
        if not self.config.budgets.has_limits and self.budget.ledger is None:
            return True
        est = self._estimate_cost(ctx, model)
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

    def _chains(self, d: Decision) -> tuple[list[str], list[str]]:
        """(primary chain, emergency cloud candidates), local-first."""
        q = self.table.quality_order
        locals_ = [m for m in q if self.table.local[m] and m in d.allowed and m != d.chosen]
        clouds = [m for m in q if not self.table.local[m] and m in d.allowed and m != d.chosen]
        if self.table.local[d.chosen]:
            return [d.chosen, *locals_], clouds
        return [d.chosen, *locals_, *clouds], []

    def _request_for(self, ctx: _Ctx, model: str) -> CompletionRequest:
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

    def _background_loser(self, fut: asyncio.Future[Any], discard: Callable[[Any], Awaitable[None]] | None) -> None:
        """Keep a hedge loser referenced until it ends; close its result if it still succeeds."""
        self._losers.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._losers.discard(f)
            if f.cancelled() or f.exception() is not None:
                return
            r = f.result()
            if r is not None and discard is not None:
                task = asyncio.ensure_future(discard(r))
                self._losers.add(task)
                task.add_done_callback(self._losers.discard)

        fut.add_done_callback(done)

    def _guard(self, ctx: _Ctx, model: str) -> None:
        if ctx.sensitive and not self.table.local[model]:  # defence in depth: planning already masks cloud
            raise AssertionError(f"refusing to send sensitive request {ctx.request_id} to cloud model {model}")

    def _emergency_trigger(self, ctx: _Ctx, d: Decision, slow_failure: bool) -> str | None:
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

    def _record_failure(self, ctx: _Ctx, model: str, err: ProviderError, breaker: CircuitBreaker) -> None:
        ctx.attempts.append(f"{model}:{err.kind.value}")
        if err.kind in CLIENT_SIDE_KINDS:
            breaker.release()
        else:
            breaker.record_failure()
            if self.table.local[model]:
                self.consecutive_local_failures += 1

    def _record_success(self, model: str, breaker: CircuitBreaker, latency: float) -> None:
        breaker.record_success()
        if self.table.local[model]:
            self.consecutive_local_failures = 0
        old = self.table.latency_s[model]
        self.table.latency_s[model] = (1 - LATENCY_EWMA) * old + LATENCY_EWMA * latency

    def _attempt_span(self, ctx: _Ctx, model: str, stream: bool) -> Span:
        from opentelemetry import trace

        parent = trace.set_span_in_context(ctx.span) if ctx.span is not None else None
        pname = self.model_provider[model]
        span = self.tracer.start_span(f"chat {model}", context=parent, kind=trace.SpanKind.CLIENT)
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", GEN_AI_SYSTEM.get(self.provider_kind[pname], pname))
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("router_rl.provider", pname)
        span.set_attribute("router_rl.stream", stream)
        if ctx.inp.max_tokens is not None:
            span.set_attribute("gen_ai.request.max_tokens", ctx.inp.max_tokens)
        return span

    @staticmethod
    def _end_span_ok(span: Span, model: str, usage: Usage | None) -> None:
        span.set_attribute("gen_ai.response.model", model)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        span.end()

    @staticmethod
    def _end_span_err(span: Span, err: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        kind = err.kind.value if isinstance(err, ProviderError) else type(err).__name__
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    async def _walk_chain(
        self,
        ctx: _Ctx,
        d: Decision,
        attempt: Callable[[str, CircuitBreaker, Span, float], Awaitable[_T]],
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
        """
        primary, emergency = self._chains(d)
        fb = self.config.fallback
        first_reason: str | None = None
        slow_failure = False
        n_attempts = 0

        def admit(model: str) -> tuple[CircuitBreaker, Reservation | None] | None:
            """Synchronous gate of one attempt: breaker, budget reservation, privacy guard."""
            nonlocal first_reason
            breaker = self.breakers[self.model_provider[model]]
            if not breaker.allow():
                ctx.attempts.append(f"{model}:breaker_open")
                first_reason = first_reason or "breaker_open"
                return None
            try:
                reservation = self._reserve(ctx, model)
            except BaseException:
                breaker.release()
                raise
            if reservation is False:
                breaker.release()
                ctx.attempts.append(f"{model}:budget_exhausted")
                first_reason = first_reason or "budget_exhausted"
                return None
            self._guard(ctx, model)
            return breaker, reservation if isinstance(reservation, Reservation) else None

        async def try_model(model: str, breaker: CircuitBreaker, reservation: Reservation | None) -> _T | None:
            nonlocal first_reason, slow_failure
            span = self._attempt_span(ctx, model, stream=stream)
            t = self._clock()
            try:
                res = await attempt(model, breaker, span, t)
            except ProviderError as e:
                dt = self._clock() - t
                self._end_span_err(span, e)
                self._record_failure(ctx, model, e, breaker)
                if reservation is not None:
                    self.budget.settle(reservation, 0.0)
                first_reason = first_reason or e.kind.value
                if self.table.local[model] and (e.kind == ProviderErrorKind.TIMEOUT or dt >= fb.latency_threshold_s):
                    slow_failure = True
                log.info("request %s: %s failed (%s)", ctx.request_id, model, e.kind.value)
                return None
            except asyncio.CancelledError:  # the request itself was cancelled (client gone, shutdown)
                self._end_span_err(span, asyncio.CancelledError())
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
            trigger = self._emergency_trigger(ctx, d, slow_failure) if emergency else None
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

    async def _execute(self, ctx: _Ctx, d: Decision) -> tuple[CompletionResult, str, str | None]:
        async def attempt(model: str, breaker: CircuitBreaker, span: Span, t: float) -> CompletionResult:
            res = await self.providers[self.model_provider[model]].complete(self._request_for(ctx, model))
            dt = self._clock() - t
            self._end_span_ok(span, res.model or model, res.usage)
            self._record_success(model, breaker, dt)
            return res

        return await self._walk_chain(ctx, d, attempt, stream=False)

    # --- bookkeeping ------------------------------------------------------------------------
    def _row(
        self,
        ctx: _Ctx,
        d: Decision | None,
        *,
        served: str | None,
        fallback_reason: str | None,
        cost: float | None,
        usage: Usage | None,
        error: str | None,
    ) -> dict[str, Any]:
        # a request rejected before any decision (unknown model, ...) is logged as never executed:
        # strategy "rejected", one-hot on the first model, served_model null, error set
        models = d.models if d else self.table.models
        probs = d.probs if d else tuple(1.0 if i == 0 else 0.0 for i in range(len(models)))
        chosen = d.chosen if d else models[0]
        reason = fallback_reason or (d.note if d else None)
        return {
            "request_id": ctx.request_id,
            "ts": datetime.fromtimestamp(self._wall(), tz=UTC),
            "agent_id": ctx.inp.agent_id,
            "agent_type": ctx.inp.agent_type,
            "category": ctx.inp.category,  # redacted by the screening when it held a secret
            "complexity": COMPLEXITY_LEVELS[ctx.level],
            "prompt_chars": len(ctx.prompt),
            "prompt_sha256": hashlib.sha256(ctx.prompt.encode()).hexdigest(),
            "prompt": ctx.prompt if self.config.logging.log_prompts else None,
            "features": list(d.features) if d and d.features is not None else None,
            "strategy": d.strategy if d else "rejected",
            "decided_by": d.decided_by if d else "rejected",
            "policy_version": d.policy_version if d else f"{self._version_prefix}:none",
            "action_models": list(models),
            "action_probs": list(probs),
            "chosen_model": chosen,
            "propensity": d.propensity if d else probs[0],
            "shadow_model": d.shadow_model if d else None,
            "breaker_states": json.dumps(self.breaker_states(), sort_keys=True),
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
        }

    def _finish(
        self,
        ctx: _Ctx,
        d: Decision | None,
        *,
        served: str | None,
        fallback_reason: str | None,
        usage: Usage | None,
        latency_s: float | None,
        error: str | None,
    ) -> float:
        cost = 0.0
        if served is not None and usage is not None:
            provider = self.providers[self.model_provider[served]]
            try:
                cost = provider.cost(served, usage, latency_s or 0.0)
            except RouterRLError:
                cost = self.catalog[served].cost(usage.input_tokens, usage.output_tokens)
            if ctx.reservation is None:
                self.budget.record(ctx.agent_id, cost)
            self.metrics.cost.labels(model=served).inc(cost)
        if ctx.reservation is not None:
            self.budget.settle(ctx.reservation, cost)
        if served is not None:
            self.policy_state.record_served(served)
        total = self._clock() - ctx.t0
        outcome = "error" if error else ("fallback" if served != (d.chosen if d else None) else "ok")
        strategy = d.strategy if d else "rejected"
        self.metrics.requests.labels(model=served or "none", strategy=strategy, outcome=outcome).inc()
        if served is not None:
            self.metrics.latency.labels(model=served).observe(total)
        self.metrics.overhead.observe(max(0.0, total - ctx.backend_s))
        if fallback_reason:
            self.metrics.fallbacks.labels(reason=fallback_reason).inc()
        if self.decision_log is not None:
            self.decision_log.append(
                self._row(ctx, d, served=served, fallback_reason=fallback_reason, cost=cost if served else None,
                          usage=usage, error=error)
            )
        if ctx.span is not None:
            span = ctx.span
            span.set_attribute("router_rl.strategy", strategy)
            span.set_attribute("router_rl.fallback_used", bool(served and d and served != d.chosen))
            if d is not None:
                span.set_attribute("gen_ai.request.model", d.chosen)
            if served is not None:
                span.set_attribute("gen_ai.response.model", served)
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if error:
                from opentelemetry.trace import Status, StatusCode

                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()
        return cost

    def _start_span(self, ctx: _Ctx) -> None:
        span = self.tracer.start_span(f"chat {ctx.inp.model}")
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", "router-rl")
        span.set_attribute("router_rl.request_id", ctx.request_id)
        span.set_attribute("router_rl.requested_model", ctx.inp.model)
        span.set_attribute("router_rl.sensitive", ctx.sensitive)
        ctx.span = span

    # --- public entry points ----------------------------------------------------------------
    def record_rejected(self, error: str, *, request_id: str | None = None) -> str:
        """Log a decision-log row for a request refused before routing (bad body, bad token).

        The row has ``strategy`` ``rejected``, no served model and ``error`` set; a caller's request
        id is kept unless it looks like a secret. Returns the logged request id.
        """
        rid = request_id if request_id and not self.screener.text_is_sensitive(request_id) else uuid.uuid4().hex
        inp = RouteInput(messages=[], request_id=rid)
        ctx = _Ctx(inp=inp, request_id=rid, agent_id="anonymous", prompt="", level=0, sensitive=False,
                   budget=BudgetStatus(False), t0=self._clock())
        self._finish(ctx, None, served=None, fallback_reason=None, usage=None, latency_s=None, error=error)
        return rid

    async def route(self, inp: RouteInput) -> RouteResult:
        """Decide, call the provider (with fallbacks) and log one non-streaming request.

        Raises:
            RouterRequestError: unknown model (404), budget reject (429), nothing could serve (503).
        """
        ctx = await self._context(inp)
        self._start_span(ctx)
        d: Decision | None = None
        try:
            d = await self._decide(ctx)
            self._apply_budget(ctx)
            res, served, reason = await self._execute(ctx, d)
        except RouterRequestError as e:
            self._finish(ctx, d, served=None, fallback_reason=None, usage=None, latency_s=None,
                         error=e.code or type(e).__name__)
            raise
        except BaseException as e:  # a bug or a cancelled request still gets its decision-log row
            self._finish(ctx, d, served=None, fallback_reason=None, usage=None, latency_s=None,
                         error=f"internal:{type(e).__name__}")
            raise
        cost = self._finish(ctx, d, served=served, fallback_reason=reason, usage=res.usage,
                            latency_s=res.latency_s, error=None)
        total = self._clock() - ctx.t0
        return RouteResult(ctx.request_id, d, res, served, reason, cost, max(0.0, total - ctx.backend_s), total)

    async def route_stream(self, inp: RouteInput) -> StreamSession:
        """Decide and open a stream, failing over until some model produced its first token.

        Raises:
            RouterRequestError: as :meth:`route`; after this returns, failures are reported
                through the session (an error event), never by truncating silently.
        """
        ctx = await self._context(inp)
        self._start_span(ctx)
        d: Decision | None = None
        try:
            d = await self._decide(ctx)
            self._apply_budget(ctx)
            return await self._open_stream(ctx, d)
        except RouterRequestError as e:
            self._finish(ctx, d, served=None, fallback_reason=None, usage=None, latency_s=None,
                         error=e.code or type(e).__name__)
            raise
        except BaseException as e:
            self._finish(ctx, d, served=None, fallback_reason=None, usage=None, latency_s=None,
                         error=f"internal:{type(e).__name__}")
            raise

    async def _open_stream(self, ctx: _Ctx, d: Decision) -> StreamSession:
        async def attempt(model: str, breaker: CircuitBreaker, span: Span, t: float) -> StreamSession:
            agen = self.providers[self.model_provider[model]].stream(self._request_for(ctx, model))
            head: list[StreamChunk] = []
            try:  # fail over only until the first token (or finish/usage) has arrived
                async for chunk in agen:
                    head.append(chunk)
                    if chunk.delta or chunk.finish_reason or chunk.usage:
                        break
            except BaseException:  # a provider error, or cancelled (lost a hedge race)
                await _aclose(agen)
                raise
            return StreamSession(self, ctx, d, model, agen, head, span, breaker, t, None)

        async def discard(session: StreamSession) -> None:
            session._breaker.release()
            session._span.end()
            await _aclose(session._agen)

        session, _, reason = await self._walk_chain(ctx, d, attempt, stream=True, discard=discard)
        session.fallback_reason = reason
        return session


async def _aclose(agen: AsyncIterator[Any]) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream must not mask the original failure
            log.debug("error while closing a broken stream", exc_info=True)


@dataclass
class StreamEvent:
    """One event of a routed stream: a text delta, or (last) an error."""

    delta: str = ""
    finish_reason: str | None = None
    error: str | None = None


class StreamSession:
    """An open routed stream. Iterate it once; it logs the decision when it ends.

    Attributes:
        request_id: Request id.
        decision: The routing decision.
        served_model: Model streaming the answer.
        fallback_reason: Why another model than the chosen one streams it, if so.
        error: Set when the stream broke after the first token (also sent as the last event).
    """

    def __init__(
        self,
        router: HybridRouter,
        ctx: _Ctx,
        decision: Decision,
        model: str,
        agen: AsyncIterator[StreamChunk],
        head: list[StreamChunk],
        span: Span,
        breaker: CircuitBreaker,
        t_start: float,
        fallback_reason: str | None,
    ) -> None:
        self._router = router
        self._ctx = ctx
        self.decision = decision
        self.request_id = ctx.request_id
        self.served_model = model
        self._agen = agen
        self._head = head
        self._span = span
        self._breaker = breaker
        self._t = t_start
        self.fallback_reason = fallback_reason
        self.error: str | None = None
        self.usage: Usage | None = None
        self._done = False

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield the stream's events; the last one carries ``error`` if the stream broke."""
        if self._done:
            raise RuntimeError("StreamSession.events() can only be iterated once")
        self._done = True
        r, ctx, model = self._router, self._ctx, self.served_model
        usage: Usage | None = None
        text_chars = 0
        finished = False
        try:
            for c in self._head:
                usage = c.usage or usage
                text_chars += len(c.delta)
                if c.delta or c.finish_reason:
                    yield StreamEvent(c.delta, c.finish_reason)
            try:
                async for c in self._agen:
                    usage = c.usage or usage
                    text_chars += len(c.delta)
                    if c.delta or c.finish_reason:
                        yield StreamEvent(c.delta, c.finish_reason)
                finished = True
            except ProviderError as e:
                self.error = f"stream_broken_after_first_token:{e.kind.value}"
                r.metrics.stream_errors.labels(phase="after_first_token").inc()
                log.error("request %s: stream from %s broke after the first token (%s)", ctx.request_id, model,
                          e.kind.value)
                yield StreamEvent(error=self.error)
        finally:
            dt = r._clock() - self._t
            ctx.backend_s += dt
            if finished:
                r._record_success(model, self._breaker, dt)
                if usage is None:
                    prov = r.providers[r.model_provider[model]]
                    usage = Usage(prov.count_tokens(ctx.prompt), max(1, text_chars // 4) if text_chars else 0,
                                  estimated=True)
                r._end_span_ok(self._span, model, usage)
            else:
                err = self.error or "client_disconnected"
                if self.error is not None:
                    self._breaker.record_failure()
                else:
                    self._breaker.release()
                from opentelemetry.trace import Status, StatusCode

                self._span.set_attribute("error.type", err)
                self._span.set_status(Status(StatusCode.ERROR, err))
                self._span.end()
                self.error = err
                await _aclose(self._agen)
            self.usage = usage
            r._finish(ctx, self.decision, served=model, fallback_reason=self.fallback_reason, usage=usage,
                      latency_s=dt, error=None if finished else self.error)
