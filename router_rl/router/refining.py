"""Iterative refinement inside the live router (the loop itself is :mod:`router_rl.router.refine`).

After the fallback chain served a non-streaming request with a local model that has a
refinement tier (``refine:`` in the router config), :class:`RouterRefiner` runs
:func:`~router_rl.router.refine.refine` on it:

* the first attempt is the answer the chain already got (no second call);
* every further generation, and the self-check, is one :meth:`ChainWalker.call
  <router_rl.router.chain.ChainWalker.call>`: privacy guard, breaker and budget reservation as
  for any attempt, its real cost settled on the budget and counted in the cost metric;
  refinement calls carry the header ``x-router-refine-iteration`` (the iteration, ``check`` for
  a self-check);
* the check is the router's ``refine_check`` (a judge the operator plugs in) or
  :func:`~router_rl.router.refine.self_check` (the model rates its own answer);
* escalation to a cloud model only when the emergency-cloud rules allow it right now, never for
  a sensitive request;
* the whole loop stays within ``refine.timeout_s`` measured from the start of the request.

A failure during refinement (a provider error, an open breaker, the budget) never fails the
request: the best answer so far (at least the chain's first answer) is returned and the
decision-log row says ``refine_stop = "error:<reason>"``. Streams are not refined (the answer is
already on its way to the client); their rows have null ``refine_*`` columns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router_rl.providers.base import CompletionResult, ProviderError
from router_rl.router.chain import CallSkipped, ChainWalker
from router_rl.router.errors import BudgetExhaustedError, PrivacyGuardError
from router_rl.router.refine import (
    Check,
    CheckFn,
    Generation,
    RefineConfig,
    RefineMetrics,
    RefineOutcome,
    refine,
    self_check,
)
from router_rl.router.request import RequestContext, RoutingDecision
from router_rl.router.strategies import ModelTable

log = logging.getLogger("router_rl.router")

#: Header naming the refinement iteration of a call (``check`` for a self-check call); the replay
#: backend reads the same header (``router_rl.replay.backend.ITERATION_HEADER``).
ITERATION_HEADER = "x-router-refine-iteration"


@dataclass
class RefineRun:
    """What refinement did to one request.

    Attributes:
        outcome: The loop's result (``None`` when it failed before finishing).
        text: The answer returned to the client.
        model: The model that wrote it.
        extra_cost_usd: Cost of the calls beyond the chain's first answer (already on the budget).
        extra_input_tokens: Input tokens of those calls.
        extra_output_tokens: Output tokens of those calls.
        error: Why the loop stopped early (``provider:<kind>``, ``breaker_open``,
            ``budget_exhausted``, ``timeout``), else ``None``.
        scores: Scores of the attempts made (kept when the loop failed too).
    """

    outcome: RefineOutcome | None
    text: str
    model: str
    extra_cost_usd: float = 0.0
    extra_input_tokens: int = 0
    extra_output_tokens: int = 0
    error: str | None = None
    scores: list[float] = field(default_factory=list)

    def log_fields(self) -> dict[str, Any]:
        """The decision-log ``refine_*`` columns."""
        if self.outcome is not None:
            out = self.outcome.log_fields()
            out["refine_cost_usd"] = self.extra_cost_usd
            if self.error is not None:
                out["refine_stop"] = f"error:{self.error}"
            return out
        return {
            "refine_iterations": max(0, len(self.scores) - 1),
            "refine_final_score": max(self.scores) if self.scores else None,
            "refine_passed": False,
            "refine_stop": f"error:{self.error}",
            "refine_model": self.model,
            "refine_escalations": [],
            "refine_cost_usd": self.extra_cost_usd,
            "refine_latency_s": None,
            "refine_scores": [round(s, 4) for s in self.scores],
        }


class RouterRefiner:
    """Runs the refinement loop for requests the chain served with a refinable local model.

    Args:
        config: The ``refine:`` settings.
        chain: The chain walker (its gated :meth:`~ChainWalker.call` makes every extra call).
        table: Model facts (locations).
        metrics: Refinement metrics in the router's registry.
        emergency_allowed: ``(ctx, decision) -> bool``: whether the emergency-cloud rules allow a
            cloud model for this request now.
        check: A judge (``None``: :func:`self_check`).
        clock: Monotonic clock.
    """

    def __init__(
        self,
        config: RefineConfig,
        chain: ChainWalker,
        table: ModelTable,
        metrics: RefineMetrics,
        emergency_allowed: Callable[[RequestContext, RoutingDecision], bool],
        *,
        check: CheckFn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.chain = chain
        self.table = table
        self.metrics = metrics
        self._emergency_allowed = emergency_allowed
        self._check = check
        self._clock = clock

    def applies(self, ctx: RequestContext, served: str) -> bool:
        """Whether the request gets refined: enabled, its agent type in scope, a local model with a tier."""
        cfg = self.config
        if not cfg.enabled or not self.table.local.get(served, False):
            return False
        if cfg.agent_types is not None and ctx.inp.agent_type not in cfg.agent_types:
            return False
        return cfg.tier_for(served) is not None

    async def run(self, ctx: RequestContext, d: RoutingDecision, first: CompletionResult, served: str,
                  first_cost: float) -> RefineRun:
        """Refine the chain's answer ``first`` (served by ``served``, costing ``first_cost``)."""
        request_messages = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                            for m in ctx.inp.messages]
        run = RefineRun(outcome=None, text=first.content, model=served)
        best: tuple[float, str, str] | None = None

        async def call(model: str, convo: list[dict[str, str]], tag: str, timeout_s: float) -> Generation:
            res, cost = await self.chain.call(ctx, model, convo, timeout_s=timeout_s, headers={ITERATION_HEADER: tag})
            run.extra_cost_usd += cost
            run.extra_input_tokens += res.usage.input_tokens
            run.extra_output_tokens += res.usage.output_tokens
            return Generation(res.content, cost, res.latency_s)

        async def generate(model: str, messages: list[dict[str, str]], iteration: int, timeout_s: float) -> Generation:
            if iteration == 0 and model == served and messages == request_messages:
                return Generation(first.content, first_cost, first.latency_s)  # the chain's answer
            return await call(model, messages, "check" if iteration < 0 else str(iteration), timeout_s)

        judge = self._check or self_check(generate)

        async def check(model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
            nonlocal best
            verdict = await judge(model, messages, answer, timeout_s)
            run.scores.append(float(verdict.score))
            if best is None or verdict.score > best[0]:
                best = (float(verdict.score), answer, model)
            return verdict

        left = self.config.timeout_s - (self._clock() - ctx.t0)
        if left <= 0:
            run.error = "timeout"
            return run
        try:
            out = await refine(
                request_messages, served, generate, check, self.config, timeout_s=left,
                is_cloud=lambda m: not self.table.local.get(m, False), privacy=ctx.sensitive,
                cloud_allowed=self._emergency_allowed(ctx, d), clock=self._clock, metrics=self.metrics,
            )
        except ProviderError as e:
            run.error = f"provider:{e.kind.value}"
        except CallSkipped as e:
            run.error = e.reason
        except (BudgetExhaustedError, PrivacyGuardError) as e:
            run.error = type(e).__name__
        except TimeoutError:
            run.error = "timeout"
        else:
            run.outcome, run.text, run.model = out, out.text, out.model
            return run
        if best is not None:  # keep the best answer checked before the failure
            run.text, run.model = best[1], best[2]
        self.metrics.requests.labels(stop=f"error:{run.error}").inc()
        log.warning("request %s: refinement stopped early (%s); the best answer so far is returned",
                    ctx.request_id, run.error)
        return run
