"""Iterative refinement (TRM) for requests routed to a local model.

The loop: generate -> judge (or a cheap self-check where no judge applies) -> if the score is
below the model's threshold, send the failure report back as a follow-up turn and regenerate,
up to the model's iteration cap; then escalate to the next model of ``escalate_to`` (a cloud
model only when the caller says the emergency rules allow it, and never for a privacy-tagged
request), which runs its own loop with its own cap. The best-scoring answer is returned.

Every attempt's cost, latency and score is kept in :class:`RefineOutcome` (``iterations``),
summarised for the decision log by :meth:`RefineOutcome.log_fields` and counted in Prometheus
by :class:`RefineMetrics`. The whole loop stays inside ``timeout_s``: an iteration starts only
when the time left covers the slowest attempt so far, and each call gets the time left as its
own timeout.

Per-model caps and thresholds (:class:`RefineConfig`) default to the fleet plan's: 7B-class
models 3 iterations / 0.90, 16B-class 5 / 0.95, 32B-class 7 / 0.98. A model gets its tier from
``models`` (explicit) or, with ``infer_from_name``, from a size in its id (``qwen2.5-coder:7b``,
``rnj-1:8b`` -> 7B class: up to 12B; up to 24B -> 16B class; up to 48B -> 32B class); a model
with no tier is generated and checked once, never refined (``stop_reason="no_tier"``).

This module is self-contained: the live router (:mod:`router_rl.router.refining`) calls
:func:`refine` with its own ``generate`` (a provider call through the fallback chain's gates)
and ``check`` (a judge or :func:`self_check`).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router_rl.core.errors import ConfigError

_SIZE_RE = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")
_NUMBER_RE = re.compile(r"(?<![0-9.])(0(?:\.\d+)?|1(?:\.0+)?)(?![0-9])")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefineTier(_Strict):
    """Refinement budget of a class of models.

    Attributes:
        max_iterations: Follow-up iterations after the first attempt (0 = check only).
        threshold: Score in ``[0, 1]`` an answer must reach to stop.
        max_params_b: Largest model size (billions of parameters) inferred into this tier.
    """

    max_iterations: int = Field(ge=0, le=50)
    threshold: float = Field(ge=0.0, le=1.0)
    max_params_b: float | None = Field(default=None, gt=0)


def _default_tiers() -> dict[str, RefineTier]:
    return {
        "7b": RefineTier(max_iterations=3, threshold=0.90, max_params_b=12),
        "16b": RefineTier(max_iterations=5, threshold=0.95, max_params_b=24),
        "32b": RefineTier(max_iterations=7, threshold=0.98, max_params_b=48),
    }


class RefineConfig(_Strict):
    """Refinement settings of the router.

    Attributes:
        enabled: Refine at all (off: one attempt, checked, ``stop_reason="disabled"``).
        tiers: Tier name -> :class:`RefineTier`.
        models: Model id -> tier name (wins over the inferred tier).
        infer_from_name: Infer a tier from a size like ``7b`` in the model id.
        escalate_to: Models tried in order after a model used its cap without passing.
        follow_up: Template of the follow-up turn; ``{score}``, ``{threshold}`` and ``{report}``
            are filled in.
        agent_types: In the live router: refine only requests of these agent types (``None``:
            every agent type).
        timeout_s: In the live router: the whole loop's time limit (first answer included); no
            attempt starts without time for it.
    """

    enabled: bool = True
    tiers: dict[str, RefineTier] = Field(default_factory=_default_tiers)
    models: dict[str, str] = Field(default_factory=dict)
    infer_from_name: bool = True
    escalate_to: list[str] = Field(default_factory=list)
    follow_up: str = (
        "Your previous answer scored {score:.2f}, below the required {threshold:.2f}. "
        "Failure report:\n{report}\nFix the problems and answer again in full."
    )
    agent_types: list[str] | None = None
    timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> RefineConfig:
        for model, tier in self.models.items():
            if tier not in self.tiers:
                raise ValueError(f"models[{model!r}]: unknown tier {tier!r}; tiers: {sorted(self.tiers)}")
        if len(set(self.escalate_to)) != len(self.escalate_to):
            raise ValueError("escalate_to: a model is listed twice")
        try:
            self.follow_up.format(score=0.0, threshold=0.0, report="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"follow_up: bad template ({e}); use {{score}}, {{threshold}}, {{report}}") from None
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> RefineConfig:
        """Validate a mapping; errors name the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"refine.{loc}" if loc else "refine", err["msg"], source=source) from None

    def tier_for(self, model: str) -> tuple[str, RefineTier] | None:
        """``(tier name, tier)`` of ``model``, or ``None`` when it has none."""
        if model in self.models:
            name = self.models[model]
            return name, self.tiers[name]
        if not self.infer_from_name:
            return None
        m = _SIZE_RE.search(model)
        if m is None:
            return None
        size = float(m.group(1))
        bounded = sorted(
            ((t.max_params_b, n) for n, t in self.tiers.items() if t.max_params_b is not None), key=lambda x: x[0]
        )
        for bound, name in bounded:
            if size <= bound:
                return name, self.tiers[name]
        return None


# --- the loop -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Generation:
    """One generated answer.

    Attributes:
        text: The answer.
        cost_usd: Cost of the call.
        latency_s: Seconds of the call.
    """

    text: str
    cost_usd: float
    latency_s: float


@dataclass(frozen=True)
class Check:
    """The verdict on one answer.

    Attributes:
        score: Quality in ``[0, 1]``.
        report: Failure report sent back in the follow-up turn (never logged).
        source: Who judged: ``judge:<kind>`` or ``self-check``.
        cost_usd: Cost of the check (a self-check is a model call).
        latency_s: Seconds of the check.
    """

    score: float
    report: str
    source: str
    cost_usd: float = 0.0
    latency_s: float = 0.0


class Generate(Protocol):
    """``await generate(model, messages, iteration, timeout_s) -> Generation``."""

    def __call__(
        self, model: str, messages: list[dict[str, str]], iteration: int, timeout_s: float
    ) -> Awaitable[Generation]: ...


class CheckFn(Protocol):
    """``await check(model, messages, answer, timeout_s) -> Check``."""

    def __call__(
        self, model: str, messages: list[dict[str, str]], answer: str, timeout_s: float
    ) -> Awaitable[Check]: ...


@dataclass(frozen=True)
class Attempt:
    """One generate + check.

    Attributes:
        model: Model that generated.
        iteration: 0 for the first attempt of that model, then 1, 2, ...
        score: The check's score.
        passed: ``score >= threshold`` of that model's tier.
        check_source: Who judged.
        cost_usd: Generation plus check cost.
        latency_s: Generation plus check seconds.
    """

    model: str
    iteration: int
    score: float
    passed: bool
    check_source: str
    cost_usd: float
    latency_s: float


@dataclass
class RefineOutcome:
    """Result of :func:`refine`.

    Attributes:
        text: The best-scoring answer.
        model: The model that produced it.
        score: Its score.
        passed: Whether it reached its model's threshold.
        stop_reason: ``passed`` | ``cap`` (every model used its cap) | ``timeout`` (no time for
            another attempt) | ``no_tier`` | ``disabled``.
        attempts: Every attempt, in order.
        escalations: Models escalated to, in order.
        skipped_escalations: ``(model, reason)`` of escalation targets not used
            (``privacy`` or ``cloud_not_allowed``).
    """

    text: str
    model: str
    score: float
    passed: bool
    stop_reason: str
    attempts: list[Attempt] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    skipped_escalations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_cost_usd(self) -> float:
        """Cost of every attempt."""
        return sum(a.cost_usd for a in self.attempts)

    @property
    def total_latency_s(self) -> float:
        """Seconds of every attempt (they run one after the other)."""
        return sum(a.latency_s for a in self.attempts)

    def log_fields(self) -> dict[str, Any]:
        """Decision-log columns: iterations, final score, stop reason, cost, latency, models."""
        return {
            "refine_iterations": len(self.attempts) - 1,
            "refine_final_score": self.score,
            "refine_passed": self.passed,
            "refine_stop": self.stop_reason,
            "refine_model": self.model,
            "refine_escalations": list(self.escalations),
            "refine_cost_usd": self.total_cost_usd,
            "refine_latency_s": self.total_latency_s,
            "refine_scores": [round(a.score, 4) for a in self.attempts],
        }


class RefineMetrics:
    """Prometheus metrics of refinement (register them in the router's registry).

    Names: ``router_rl_refine_attempts_total{model}``, ``router_rl_refine_requests_total{stop}``,
    ``router_rl_refine_final_score`` (histogram), ``router_rl_refine_cost_usd_total{model}``,
    ``router_rl_refine_escalations_total{model}``.
    """

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.attempts = Counter("router_rl_refine_attempts", "Refinement attempts", ["model"], registry=registry)
        self.requests = Counter("router_rl_refine_requests", "Refined requests by stop reason", ["stop"],
                                registry=registry)
        self.final_score = Histogram("router_rl_refine_final_score", "Final refinement score",
                                     buckets=(0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0), registry=registry)
        self.cost = Counter("router_rl_refine_cost_usd", "USD spent in refinement attempts", ["model"],
                            registry=registry)
        self.escalations = Counter("router_rl_refine_escalations", "Escalations after the cap", ["model"],
                                   registry=registry)

    def observe(self, out: RefineOutcome) -> None:
        """Count one finished :func:`refine` call."""
        for a in out.attempts:
            self.attempts.labels(model=a.model).inc()
            self.cost.labels(model=a.model).inc(a.cost_usd)
        for m in out.escalations:
            self.escalations.labels(model=m).inc()
        self.requests.labels(stop=out.stop_reason).inc()
        self.final_score.observe(out.score)


async def refine(
    messages: list[dict[str, str]],
    model: str,
    generate: Generate,
    check: CheckFn,
    config: RefineConfig,
    *,
    timeout_s: float,
    is_cloud: Callable[[str], bool],
    privacy: bool = False,
    cloud_allowed: bool = False,
    clock: Callable[[], float] = time.monotonic,
    metrics: RefineMetrics | None = None,
) -> RefineOutcome:
    """Run the generate -> check -> follow-up loop for one request.

    Args:
        messages: The request's chat messages.
        model: The local model the router chose.
        generate: Provider call (gets the time left as ``timeout_s``).
        check: Judge or :func:`self_check` (gets the time left).
        config: Caps, thresholds, escalation chain.
        timeout_s: The request's timeout; no attempt starts without time for it.
        is_cloud: Whether a model id is a cloud model.
        privacy: The request is privacy-tagged (never escalated to a cloud model).
        cloud_allowed: The emergency rules allow a cloud escalation now.
        clock: Monotonic clock (injected in tests).
        metrics: Prometheus metrics to update.

    Returns:
        The :class:`RefineOutcome`; ``generate``/``check`` errors propagate (the caller's
        fallback logic decides), with the attempts made so far lost only in that case.
    """
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s: expected a finite number > 0, got {timeout_s!r}")
    deadline = clock() + timeout_s
    attempts: list[Attempt] = []
    best: tuple[float, str, str, bool] | None = None  # score, text, model, passed
    out_escalations: list[str] = []
    skipped: list[tuple[str, str]] = []

    chain = [model]
    for m in config.escalate_to:
        if m == model:
            continue
        if is_cloud(m) and privacy:
            skipped.append((m, "privacy"))
        elif is_cloud(m) and not cloud_allowed:
            skipped.append((m, "cloud_not_allowed"))
        else:
            chain.append(m)

    first = config.tier_for(model) if config.enabled else None
    base_threshold = first[1].threshold if first else 1.0
    if first is None:
        chain = [model]  # not refined, hence not escalated either
    stop = "cap"
    for pos, current in enumerate(chain):
        tier = config.tier_for(current) if config.enabled else None
        cap = tier[1].max_iterations if tier else 0
        threshold = tier[1].threshold if tier else base_threshold
        if pos > 0:
            out_escalations.append(current)
        convo = [dict(m) for m in messages]
        slowest = 0.0
        passed = False
        for it in range(cap + 1):
            left = deadline - clock()
            if left <= 0 or (attempts and left < slowest):
                stop = "timeout"
                break
            t0 = clock()
            gen = await asyncio.wait_for(generate(current, convo, it, left), timeout=left)
            left = max(1e-3, deadline - clock())
            chk = await asyncio.wait_for(check(current, convo, gen.text, left), timeout=left)
            if not (0.0 <= chk.score <= 1.0):
                raise ValueError(f"check returned score {chk.score!r}, expected a value in [0, 1]")
            passed = first is not None and chk.score >= threshold
            slowest = max(slowest, clock() - t0)
            attempts.append(
                Attempt(current, it, chk.score, passed, chk.source, gen.cost_usd + chk.cost_usd,
                        gen.latency_s + chk.latency_s)
            )
            if best is None or chk.score > best[0]:
                best = (chk.score, gen.text, current, passed)
            if passed:
                stop = "passed"
                break
            convo = [*convo, {"role": "assistant", "content": gen.text},
                     {"role": "user", "content": config.follow_up.format(score=chk.score, threshold=threshold,
                                                                          report=chk.report)}]
        if passed or stop == "timeout":
            break
    if first is None and stop == "cap":
        stop = "disabled" if not config.enabled else "no_tier"
    if best is None:
        raise TimeoutError(f"refine: no attempt fitted in timeout_s={timeout_s}")
    out = RefineOutcome(best[1], best[2], best[0], best[3], stop, attempts, out_escalations, skipped)
    if metrics is not None:
        metrics.observe(out)
    return out


def parse_score(text: str) -> float | None:
    """The first number in ``[0, 1]`` in ``text`` (a self-check's answer), else ``None``."""
    m = _NUMBER_RE.search(text)
    return float(m.group(1)) if m else None


def self_check(generate: Generate) -> CheckFn:
    """A cheap self-check: ask the same model to rate its answer from 0 to 1.

    The rating prompt asks for one number; the first number in ``[0, 1]`` of the reply is the
    score (an unparsable reply scores 0, with the reply's first 200 characters as the report).
    The check's cost and latency are those of the extra call.
    """

    async def check(model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
        prompt = [
            *messages,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Rate how well your previous answer solves the task, from 0 to 1. "
                                        "Reply with the number first, then the main problems."},
        ]
        gen = await generate(model, prompt, -1, timeout_s)
        score = parse_score(gen.text)
        report = gen.text if score is not None else f"unparsable self-check: {gen.text[:200]}"
        return Check(score if score is not None else 0.0, report, "self-check", gen.cost_usd, gen.latency_s)

    return check
