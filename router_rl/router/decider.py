"""The routing decision: strategy resolution, rule and learned policies, and the rollout state.

The :class:`Decider` turns one request context into a :class:`RoutingDecision`: it resolves the
requested model (``router-rl/auto``, a strategy, a concrete model), applies the privacy and
budget masks, and runs the rule strategies or the learned policy. It also owns the rollout
state: the kill switch, the A/B share of the candidate strategy and the shadow policy.

The logged ``probs`` is the distribution the executed decision was drawn from, after the masks,
so ``propensity`` is valid for off-policy evaluation. With exploration configured
(``exploration`` in the config), :func:`router_rl.policies.exploration.explore` is applied to the
policy's distribution after every mask (privacy-forced local, budget ``local_only``, open
breakers) and the action is drawn from the result with the same seeded per-request uniform, so
``probs`` / ``propensity`` are exactly the sampled distribution.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from router_rl.core.errors import ConfigError
from router_rl.policies.exploration import ExplorationConfig, explore, explored
from router_rl.router.budget import BudgetTracker, ExhaustedBehaviour
from router_rl.router.config import CoalesceConfig, RouterConfig, Strategy
from router_rl.router.draws import sample_index, uniform
from router_rl.router.errors import NoProviderAvailableError, UnknownModelError
from router_rl.router.live_policy import LivePolicies
from router_rl.router.policy_client import (
    HTTPPolicyClient,
    InProcessPolicyClient,
    PolicyClient,
    PolicyClientError,
    task_record,
)
from router_rl.router.policy_slot import PolicySlot, load_registry_slot, open_registry
from router_rl.router.policy_state import PolicyStateTracker
from router_rl.router.request import AUTO, PREFIX, RequestContext, RoutingDecision
from router_rl.router.strategies import ModelTable, rule_choice
from router_rl.router.telemetry import RouterMetrics

log = logging.getLogger("router_rl.router")


def build_policy_client(
    models: tuple[str, ...],
    policy_dir: Path | None = None,
    endpoint: str | None = None,
    timeout_s: float = 0.05,
    setting: str = "learned",
    coalesce: CoalesceConfig | None = None,
) -> PolicyClient | None:
    """The policy client of a ``policy_dir`` (in-process) or an ``endpoint`` (HTTP); ``None`` without either.

    ``coalesce`` (enabled) makes the HTTP client coalesce concurrent calls (``learned.coalesce``).

    Raises:
        ConfigError: the artifact cannot be loaded (names ``<setting>.policy_dir``).
    """
    if policy_dir is not None:
        try:
            return InProcessPolicyClient.from_dir(policy_dir)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{setting}.policy_dir", str(e)) from None
    if endpoint is not None:
        if coalesce is not None and coalesce.enabled:
            return HTTPPolicyClient(endpoint, models, timeout_s=timeout_s, max_batch=coalesce.max_batch,
                                    max_in_flight=coalesce.max_in_flight, io_thread=coalesce.io_thread)
        return HTTPPolicyClient(endpoint, models, timeout_s=timeout_s)
    return None


class Decider:
    """Decides one request; holds the policies and the rollout state.

    Args:
        config: Validated configuration.
        table: What the router knows about each model.
        served_models: The concrete model ids a request may name.
        budget: The budget tracker (its ``local_only`` behaviour masks cloud models).
        policy_state: The router state a stateful learned policy sees.
        metrics: Metrics holder.
        open_models: Models whose provider's breaker is open now (masked before exploration).
        policy_client: The LEARNED strategy's policy (built from ``config.learned`` when ``None``).
        shadow_policy_client: The shadow's candidate policy (built from ``rollout.shadow`` when
            ``None`` and a candidate policy is configured there).
    """

    def __init__(
        self,
        config: RouterConfig,
        table: ModelTable,
        served_models: frozenset[str],
        budget: BudgetTracker,
        policy_state: PolicyStateTracker,
        metrics: RouterMetrics,
        open_models: Callable[[], frozenset[str]] = frozenset,
        *,
        policy_client: PolicyClient | None = None,
        shadow_policy_client: PolicyClient | None = None,
    ) -> None:
        self.config = config
        self.table = table
        self._served = served_models
        self._budget = budget
        self._policy_state = policy_state
        self._metrics = metrics
        self._open_models = open_models
        self.version_prefix = f"rules@{config.fingerprint()}"
        self.policies = self._build_policies(policy_client)
        sh = config.rollout.shadow
        self.shadow_client: PolicyClient | None = None
        if shadow_policy_client is not None:
            self.shadow_client = shadow_policy_client
        elif sh is not None and sh.has_policy:
            self.shadow_client = build_policy_client(table.models, sh.policy_dir, sh.endpoint, sh.timeout_s,
                                                     "rollout.shadow")
        self._check_policy_models(self.shadow_client, "rollout.shadow")
        self.kill_switch_active = False
        self.kill_switch_reason: str | None = None
        self.ab_percentage = config.rollout.percentage

    def _build_policies(self, policy_client: PolicyClient | None) -> LivePolicies:
        """The live policy versions from ``policy_client`` or ``config.learned`` (its registry, a folder, an endpoint).

        Raises:
            ConfigError: naming ``learned.registry`` / ``learned.policy_dir``.
        """
        lc = self.config.learned
        registry = None
        live: PolicySlot | None = None
        canary: PolicySlot | None = None
        share = 0.0
        if policy_client is not None:
            src = lc.policy_dir if isinstance(policy_client, InProcessPolicyClient) else None
            live = PolicySlot(policy_client, source=src)
        elif lc.registry is not None:
            registry = open_registry(lc.registry)
            version = registry.live
            if version is None and self.config.strategy == Strategy.LEARNED:
                raise ConfigError("learned.registry", f"{lc.registry} has no live version (promote one first, or "
                                  "start on a rule strategy and POST /admin/policy once one is promoted)")
            if version is not None:
                live = load_registry_slot(registry, version, "learned.registry")
            cs = registry.canary
            if cs is not None and getattr(cs, "version", None) and 0 < float(cs.share) < 1:
                canary = load_registry_slot(registry, cs.version, "learned.registry")
                share = float(cs.share)
        else:
            client = build_policy_client(self.table.models, lc.policy_dir, lc.endpoint, lc.timeout_s,
                                         coalesce=lc.coalesce)
            if client is not None:
                live = PolicySlot(client, source=lc.policy_dir)
        setting = "learned.registry" if registry is not None else "learned"
        for slot in (live, canary):
            if slot is not None:
                self._check_policy_models(slot.inner, setting)
        return LivePolicies(live, self._check_policy_models, self._metrics, lc.canary, lc.rollback,
                            registry=registry, canary=canary, canary_share=share)

    @property
    def policy_client(self) -> PolicyClient | None:
        """The live version of the LEARNED strategy (``None``: none configured)."""
        return self.policies.live

    def _check_policy_models(self, client: PolicyClient | None, setting: str) -> None:
        if client is not None:
            unknown = [m for m in client.models if m not in self.table.models]
            if unknown:
                raise ConfigError(setting, f"the policy chooses among models the router does not serve: {unknown}")
            self._policy_state.check_supports(client.state_spec, setting=setting, policy=client.name)

    async def aclose(self) -> None:
        """Close the policy clients."""
        await self.policies.aclose()
        if self.shadow_client is not None:
            await self.shadow_client.close()

    # --- rollout state ----------------------------------------------------------------------
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

    def strategies(self) -> list[Strategy]:
        """Strategies this router can serve (``learned`` only with a configured policy)."""
        return [s for s in Strategy if s != Strategy.LEARNED or self.policy_client is not None]

    # --- decision ---------------------------------------------------------------------------
    def resolve_requested(self, model: str) -> tuple[Strategy | None, str | None, bool]:
        """(strategy, concrete model, is_auto) of a request's ``model`` field.

        Raises:
            UnknownModelError: an unknown strategy or model, or ``learned`` without a policy.
        """
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
                    f"{model}: no learned policy is configured "
                    "(set learned.policy_dir, learned.endpoint or learned.registry)",
                    param="model",
                )
            return strategy, None, False
        if model in self._served:
            return None, model, False
        raise UnknownModelError(
            f"unknown model {model!r}; use {AUTO}, router-rl/<strategy> or one of {list(self.table.models)}",
            param="model",
        )

    def _one_hot(
        self, chosen: str, strategy: str, allowed: tuple[str, ...], note: str | None = None,
        decided_by: str | None = None,
    ) -> RoutingDecision:
        probs = tuple(1.0 if m == chosen else 0.0 for m in self.table.models)
        return RoutingDecision(
            strategy=strategy,
            decided_by=decided_by or strategy,
            policy_version=f"{self.version_prefix}:{decided_by or strategy}",
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
        ctx: RequestContext,
        allowed: tuple[str, ...],
        salt: str,
        client: PolicyClient | None = None,
        *,
        track: bool = True,
    ) -> RoutingDecision:
        if strategy != Strategy.LEARNED:
            chosen = rule_choice(
                strategy, self.table, ctx.level, allowed, prompt_chars=len(ctx.prompt), max_tokens=ctx.inp.max_tokens
            )
            return self._one_hot(chosen, strategy.value, allowed)
        note: str | None
        state_json: str | None = None
        slot: PolicySlot | None = None
        if client is None:
            slot = self.policies.pick(ctx.request_id)
            client = slot
        if client is None:
            note = "policy_unavailable"
        else:
            state = self._policy_state.snapshot() if client.wants_state else None
            state_json = state.model_dump_json() if state is not None else None
            try:
                record = task_record(ctx.prompt, ctx.inp.category, ctx.inp.agent_type, ctx.inp.max_tokens,
                                     len(ctx.inp.messages), state, complexity=ctx.inp.complexity)
                ans = await asyncio.wait_for(client.distribution(record), self.config.learned.timeout_s * 2 + 0.05)
            except (PolicyClientError, TimeoutError) as e:
                reason = e.reason if isinstance(e, PolicyClientError) else "timeout"
                note = f"policy_{reason}"
                self._metrics.policy_errors.labels(reason=reason).inc()
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
                    top = max(range(len(probs)), key=lambda i: probs[i])
                    idx = sample_index(probs, uniform(self.config.seed, salt, ctx.request_id)) \
                        if self.config.learned.sample else top
                    if slot is not None and track:
                        self.policies.on_decision(ctx.request_id, slot.label)
                    return RoutingDecision(
                        strategy=Strategy.LEARNED.value,
                        policy_version=ans.version,
                        learned_version=slot.label if slot is not None and track else None,
                        encoder_fingerprint=slot.encoder_fingerprint if slot is not None else None,
                        models=self.table.models,
                        probs=probs,
                        chosen=self.table.models[idx],
                        propensity=probs[idx],
                        confidence=max(probs),
                        allowed=allowed,
                        features=ans.features,
                        policy_state=state_json,
                        explored=idx != top,
                    )
                note = "policy_masked"
        chosen = rule_choice(Strategy.BALANCED, self.table, ctx.level, allowed)
        d = self._one_hot(chosen, Strategy.LEARNED.value, allowed, note=note, decided_by=Strategy.BALANCED.value)
        d.policy_version = f"{self.version_prefix}:balanced(fallback)"
        d.policy_state = state_json
        if slot is not None and track:
            d.learned_version = slot.label
        return d

    async def decide(self, ctx: RequestContext) -> RoutingDecision:
        """The decision of one request (masks, kill switch, A/B assignment, shadow, exploration).

        Raises:
            UnknownModelError: see :meth:`resolve_requested`.
            NoProviderAvailableError: a local-only request and no local model configured.
        """
        d = await self._decide(ctx)
        if d.strategy != "explicit" and d.note != "kill_switch":
            cfg = self.config.exploration.for_request(d.strategy, ctx.inp.agent_type)
            if cfg is not None and cfg.active:
                self._explore(ctx, d, cfg)
        return d

    def _explore(self, ctx: RequestContext, d: RoutingDecision, cfg: ExplorationConfig) -> None:
        """Replace ``d``'s distribution by the explored one and draw ``chosen`` from it."""
        import numpy as np

        models = self.table.models
        base = np.asarray(d.probs, dtype=np.float64)
        if d.decided_by == Strategy.LEARNED.value and not self.config.learned.sample:
            base = np.asarray([1.0 if m == d.chosen else 0.0 for m in models])  # the argmax policy
        broken = self._open_models()
        mask = np.asarray([m in d.allowed and m not in broken for m in models])
        if not mask.any():  # every allowed model's breaker is open: the chain's probes decide
            mask = np.asarray([m in d.allowed for m in models])
        q = explore(base, cfg, mask)
        idx = sample_index(q.tolist(), uniform(self.config.seed, "act", ctx.request_id))
        d.probs = tuple(float(v) for v in q)
        d.chosen = models[idx]
        d.propensity = d.probs[idx]
        d.explored = bool(explored(base, idx))
        d.exploration = json.dumps(cfg.to_log(), sort_keys=True)

    async def _decide(self, ctx: RequestContext) -> RoutingDecision:
        strategy, concrete, is_auto = self.resolve_requested(ctx.inp.model)
        allowed = tuple(self.table.models)
        if ctx.sensitive or (ctx.budget.exhausted and self._budget.behaviour == ExhaustedBehaviour.LOCAL_ONLY):
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
            if uniform(ro.seed, "ab", key) <= self.ab_percentage / 100.0:
                strategy = ro.candidate
        if ro.shadow is not None:
            d, shadow = await asyncio.gather(
                self._decide_strategy(strategy, ctx, allowed, "act"),
                self._decide_strategy(ro.shadow.strategy, ctx, allowed, "shadow", self.shadow_client, track=False),
            )
            d.shadow_model = shadow.chosen
            self._metrics.shadow.labels(agree=str(shadow.chosen == d.chosen).lower()).inc()
            return d
        return await self._decide_strategy(strategy, ctx, allowed, "act")
