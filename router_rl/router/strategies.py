"""Rule strategies: deterministic model choice from complexity, location, price and latency.

All functions here are pure: they take a :class:`ModelTable` (what the router knows about each
model) and the set of models allowed for the request (privacy / budget masks applied) and
return one model id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from router_rl.router.config import COMPLEXITY_LEVELS, RouterConfig, Strategy
from router_rl.traces.catalog import ModelCatalog

DEFAULT_OUTPUT_TOKENS = 256


@dataclass
class ModelTable:
    """Per-model facts the rule strategies use.

    Attributes:
        models: All model ids (the action set, in config order).
        tiers: Complexity level -> model (the seed fleet's rule policy).
        quality_order: Models best-first.
        capability: Highest complexity level index (0-3) a model is assigned to; unassigned
            local models get 0 and unassigned cloud models 3.
        local: Whether each model runs locally.
        catalog: Prices for cost estimates.
        latency_s: Expected latency per model (prior, refined online by the router).
    """

    models: tuple[str, ...]
    tiers: dict[str, str]
    quality_order: tuple[str, ...]
    capability: dict[str, int]
    local: dict[str, bool]
    catalog: ModelCatalog
    latency_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: RouterConfig, catalog: ModelCatalog) -> ModelTable:
        """Derive the table from a validated config and its catalog."""
        models = tuple(cfg.model_ids())
        tiers = {lv: cfg.tiers.for_level(lv) for lv in COMPLEXITY_LEVELS}
        local = {m: catalog[m].is_local for m in models}
        cap: dict[str, int] = {}
        for i, lv in enumerate(COMPLEXITY_LEVELS):
            cap[tiers[lv]] = max(cap.get(tiers[lv], 0), i)
        for m in models:
            cap.setdefault(m, 0 if local[m] else len(COMPLEXITY_LEVELS) - 1)
        lat = {}
        for m in models:
            if m in cfg.expected_latency_s:
                lat[m] = float(cfg.expected_latency_s[m])
            else:
                tps = catalog[m].tokens_per_s
                lat[m] = DEFAULT_OUTPUT_TOKENS / tps if tps else (1.0 if local[m] else 2.0)
        return cls(models, tiers, tuple(cfg.resolved_quality_order()), cap, local, catalog, lat)

    def quality_rank(self, model: str) -> int:
        """0 for the best model."""
        return self.quality_order.index(model)

    def est_cost(self, model: str, prompt_chars: int, max_tokens: int | None) -> float:
        """Estimated USD of one call (chars/4 input tokens, ``max_tokens`` or 256 output tokens)."""
        out = max_tokens if max_tokens else DEFAULT_OUTPUT_TOKENS
        return self.catalog[model].cost(prompt_chars / 4.0, float(out))


def closest_capable(table: ModelTable, level: int, allowed: Sequence[str]) -> str:
    """The least capable allowed model that still handles ``level`` (ties: better quality);
    the most capable allowed model when none does."""
    if not allowed:
        raise ValueError("closest_capable: no allowed model")
    capable = [m for m in allowed if table.capability[m] >= level]
    if capable:
        return min(capable, key=lambda m: (table.capability[m], table.quality_rank(m)))
    return max(allowed, key=lambda m: (table.capability[m], -table.quality_rank(m)))


def rule_choice(
    strategy: Strategy,
    table: ModelTable,
    level: int,
    allowed: Sequence[str],
    *,
    prompt_chars: int = 0,
    max_tokens: int | None = None,
) -> str:
    """The model a rule strategy picks.

    Args:
        strategy: Any strategy but ``LEARNED`` (whose rule fallback is ``BALANCED``).
        table: Model facts.
        level: Complexity level index (0 = simple ... 3 = very complex).
        allowed: Models permitted for this request (masks applied), non-empty.
        prompt_chars: Prompt length (cost estimates).
        max_tokens: Requested output tokens (cost estimates).
    """
    if not allowed:
        raise ValueError("rule_choice: no allowed model")
    allowed = [m for m in table.models if m in set(allowed)]
    if strategy == Strategy.PRIVACY_FIRST:
        local = [m for m in allowed if table.local[m]]
        allowed = local or allowed  # an all-cloud allowed set cannot happen for sensitive requests
    if strategy in (Strategy.BALANCED, Strategy.LEARNED, Strategy.PRIVACY_FIRST):
        tier = table.tiers[COMPLEXITY_LEVELS[level]]
        return tier if tier in allowed else closest_capable(table, level, allowed)
    if strategy == Strategy.QUALITY_OPTIMIZED:
        return min(allowed, key=table.quality_rank)
    capable = [m for m in allowed if table.capability[m] >= level] or [closest_capable(table, level, allowed)]
    if strategy == Strategy.COST_OPTIMIZED:
        return min(capable, key=lambda m: (table.est_cost(m, prompt_chars, max_tokens), table.quality_rank(m)))
    if strategy == Strategy.LATENCY_OPTIMIZED:
        return min(capable, key=lambda m: (table.latency_s[m], table.quality_rank(m)))
    raise ValueError(f"rule_choice: unknown strategy {strategy!r}")
