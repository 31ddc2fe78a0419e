"""Turn per-model predictions into a routing distribution.

Every quality-predicting router (LightGBM, kNN, MLP, matrix factorisation) shares this rule::

    utility[i, j] = q̂[i, j] − λ · ĉ[i, j] / c_ref − μ · l̂[i, j] / l_ref + ν · local[j]

maximised over the models *allowed* for task ``i`` (privacy-sensitive tasks: local models only;
models whose predicted quality is under ``quality_floor`` are dropped unless none is left).
``c_ref`` / ``l_ref`` are the reference (best single) model's mean cost / latency on the
training data, so λ and μ are dimensionless: λ = 1 means "paying the reference model's cost is
worth one unit of quality". ν (``nu``) is the locality term: a bonus, in units of quality, for
answering on a local model (the mission's objective: the most traffic on local models at a quality
floor, then the lowest cost); ν = 0.1 means "a local answer is worth 0.1 of success probability
more than a cloud one". It needs the model locations (``is_local``).

The deterministic default puts all mass on the best allowed model; ``temperature > 0`` gives a
softmax over allowed models and ``epsilon > 0`` mixes in a uniform share over allowed models,
so every allowed model gets a propensity > 0 (needed for off-policy evaluation of logs).

Escalation (cascade idea): probability mass on a model whose predicted success is below
``escalate_below`` moves to the next tier up: the cheapest more expensive allowed model whose
predicted success clears the threshold, else the allowed model with the highest prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from router_rl.core.config import NonNegativeFloat, StrictConfig, UnitFloat


class DecisionConfig(StrictConfig):
    """Knobs of the utility decision rule (validated on construction).

    Attributes:
        lam: λ, weight of cost in units of the reference model's mean cost (>= 0).
        mu: μ, weight of latency in units of the reference model's mean latency (>= 0).
        nu: ν, bonus for local models in units of quality (>= 0; needs the model locations).
        temperature: 0 = argmax (deterministic); > 0 = softmax(utility / temperature).
        epsilon: Uniform exploration share over allowed models, in [0, 1).
        quality_floor: Drop models whose predicted quality is below this (None = off).
        escalate_below: Escalate when the chosen model's predicted success is below this.
        privacy_local_only: Privacy-sensitive tasks may only go to local models.
    """

    lam: NonNegativeFloat = 0.0
    mu: NonNegativeFloat = 0.0
    nu: NonNegativeFloat = 0.0
    temperature: NonNegativeFloat = 0.0
    epsilon: Annotated[float, Field(ge=0, lt=1)] = 0.0
    quality_floor: UnitFloat | None = None
    escalate_below: UnitFloat | None = None
    privacy_local_only: bool = True

    def with_(self, **changes: Any) -> DecisionConfig:
        """A copy with ``changes`` applied (validated)."""
        return self.replace(**changes)


@dataclass
class Decision:
    """Result of :func:`decide`.

    Attributes:
        probs: ``(n, m)`` distribution over models.
        utility: ``(n, m)`` utilities (``-inf`` where not allowed).
        allowed: ``(n, m)`` bool mask after constraints.
        escalated: ``(n,)`` bool, True where the argmax model was escalated.
        hits: Per row, the constraint names that changed the choice set.
    """

    probs: np.ndarray
    utility: np.ndarray
    allowed: np.ndarray
    escalated: np.ndarray
    hits: list[list[str]] = field(default_factory=list)


def decide(
    quality: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray | None,
    cfg: DecisionConfig,
    *,
    cost_scale: float,
    latency_scale: float = 1.0,
    sensitive: np.ndarray | None = None,
    is_local: np.ndarray | None = None,
    explain: bool = False,
) -> Decision:
    """Apply the utility rule (see module docstring).

    Args:
        quality: ``(n, m)`` predicted quality / success probability in [0, 1].
        cost: ``(n, m)`` expected USD per call.
        latency: ``(n, m)`` expected seconds, or None (ignored).
        cfg: Decision knobs.
        cost_scale: ``c_ref`` (> 0).
        latency_scale: ``l_ref`` (> 0).
        sensitive: ``(n,)`` bool, privacy-sensitive tasks (None = none).
        is_local: ``(m,)`` bool, local models (needed when ``sensitive`` has a True row).
        explain: Also fill :attr:`Decision.hits` (slower; for the CLI / logs).
    """
    n, m = quality.shape
    if n == 1 and not explain and _plain_argmax(cfg):
        return _decide_one_argmax(quality, cost, latency, cfg, cost_scale, latency_scale, sensitive, is_local)
    util = quality - cfg.lam * cost / max(cost_scale, 1e-12)
    if latency is not None and cfg.mu > 0:
        util = util - cfg.mu * np.nan_to_num(latency, nan=0.0) / max(latency_scale, 1e-12)
    if cfg.nu > 0:
        util = util + cfg.nu * _local_mask(is_local, m)
    allowed = np.ones((n, m), dtype=bool)
    privacy_rows = np.zeros(n, dtype=bool)
    if cfg.privacy_local_only and sensitive is not None and sensitive.any():
        if is_local is None:
            raise ValueError("decide: privacy-sensitive tasks need the model locations (a catalog)")
        if not is_local.any():
            raise ValueError("decide: a privacy-sensitive task arrived but no candidate model is local")
        privacy_rows = sensitive.astype(bool)
        allowed[privacy_rows] &= is_local[None, :]
    floor_rows = np.zeros(n, dtype=bool)
    if cfg.quality_floor is not None:
        ok = allowed & (quality >= cfg.quality_floor)
        none_ok = ~ok.any(axis=1)
        # nobody clears the floor: keep the allowed model(s) with the highest prediction
        if none_ok.any():
            qa = np.where(allowed, quality, -np.inf)
            best = qa.argmax(axis=1)
            ok[none_ok, best[none_ok]] = True
        floor_rows = (ok != allowed).any(axis=1)
        allowed = ok
    util = np.where(allowed, util, -np.inf)
    probs = _distribution(util, allowed, cfg)
    escalated = np.zeros(n, dtype=bool)
    if cfg.escalate_below is not None:
        argmax_before = probs.argmax(axis=1)
        probs = _escalate(probs, quality, cost, allowed, cfg.escalate_below)
        escalated = probs.argmax(axis=1) != argmax_before
    hits: list[list[str]] = []
    if explain:
        for i in range(n):
            h = []
            if privacy_rows[i]:
                h.append("privacy: local models only")
            if floor_rows[i]:
                h.append(f"quality floor {cfg.quality_floor}")
            if escalated[i]:
                h.append(f"escalated: confidence < {cfg.escalate_below}")
            hits.append(h)
    return Decision(probs=probs, utility=util, allowed=allowed, escalated=escalated, hits=hits)


def _local_mask(is_local: np.ndarray | None, m: int) -> np.ndarray:
    """``(m,)`` 0/1 float locality of the models, for the ν term."""
    if is_local is None:
        raise ValueError("decide: nu > 0 (the locality term) needs the model locations (a catalog)")
    loc = np.asarray(is_local, dtype=np.float64)
    if loc.shape != (m,):
        raise ValueError(f"decide: is_local must have shape ({m},), got {loc.shape}")
    return loc


def _plain_argmax(cfg: DecisionConfig) -> bool:
    """The default rule: argmax, no exploration, no floor, no escalation."""
    return cfg.temperature == 0 and cfg.epsilon == 0 and cfg.quality_floor is None and cfg.escalate_below is None


def _decide_one_argmax(
    quality: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray | None,
    cfg: DecisionConfig,
    cost_scale: float,
    latency_scale: float,
    sensitive: np.ndarray | None,
    is_local: np.ndarray | None,
) -> Decision:
    """:func:`decide` of one row under :func:`_plain_argmax` (the live router): same arrays, fewer numpy calls."""
    m = quality.shape[1]
    util = quality - cfg.lam * cost / max(cost_scale, 1e-12)
    if latency is not None and cfg.mu > 0:
        util = util - cfg.mu * np.nan_to_num(latency, nan=0.0) / max(latency_scale, 1e-12)
    if cfg.nu > 0:
        util = util + cfg.nu * _local_mask(is_local, m)
    if cfg.privacy_local_only and sensitive is not None and bool(sensitive[0]):
        if is_local is None:
            raise ValueError("decide: privacy-sensitive tasks need the model locations (a catalog)")
        if not is_local.any():
            raise ValueError("decide: a privacy-sensitive task arrived but no candidate model is local")
        allowed = np.asarray(is_local, dtype=bool).reshape(1, m).copy()
        util = np.where(allowed, util, -np.inf)
    else:
        allowed = np.ones((1, m), dtype=bool)  # everything allowed: the masking would copy util unchanged
    probs = np.zeros((1, m))
    probs[0, int(util[0].argmax())] = 1.0
    return Decision(probs=probs, utility=util, allowed=allowed, escalated=np.zeros(1, dtype=bool), hits=[])


def _distribution(util: np.ndarray, allowed: np.ndarray, cfg: DecisionConfig) -> np.ndarray:
    n, m = util.shape
    if cfg.temperature > 0:
        z = (util - util.max(axis=1, keepdims=True)) / cfg.temperature
        e = np.where(allowed, np.exp(z), 0.0)
        p = e / e.sum(axis=1, keepdims=True)
    else:
        p = np.zeros((n, m))
        p[np.arange(n), util.argmax(axis=1)] = 1.0
    if cfg.epsilon > 0:
        uni = allowed / allowed.sum(axis=1, keepdims=True)
        p = (1.0 - cfg.epsilon) * p + cfg.epsilon * uni
    return p


def _escalate(
    probs: np.ndarray, quality: np.ndarray, cost: np.ndarray, allowed: np.ndarray, threshold: float
) -> np.ndarray:
    n, m = probs.shape
    rows = np.arange(n)
    out = probs.copy()
    q_allowed = np.where(allowed, quality, -np.inf)
    best_q = q_allowed.argmax(axis=1)
    for j in range(m):
        low = (quality[:, j] < threshold) & (out[:, j] > 0)
        if not low.any():
            continue
        # candidates: allowed, more expensive than j, confident enough; take the cheapest
        cand = allowed & (cost > cost[:, [j]]) & (quality >= threshold)
        c = np.where(cand, cost, np.inf)
        tgt = np.where(cand.any(axis=1), c.argmin(axis=1), best_q)
        move = low & (tgt != j)
        if not move.any():
            continue
        mass = out[move, j].copy()
        out[move, j] = 0.0
        np.add.at(out, (rows[move], tgt[move]), mass)
    return out
