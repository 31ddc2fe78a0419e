"""The true value of a routing distribution on the loop's traffic, known from the world's matrix.

Every logged row of a round is a request for a known task (``request id -> matrix row``), served
with the regression factors of that round. The true value of a distribution ``pi`` over the
models on those rows is ``mean_i sum_a pi[i, a] * truth[task_i, a]`` for quality, cost (the
matrix's recorded cost) and local share, exactly what an off-policy estimate on the same rows
estimates (``router_rl.logs.truth.LogTruth.value``).

The router logs the distribution it sampled from, *after* its masks (privacy-forced local: the
models with probability 0 under exploration) and exploration. :func:`base_distribution` recovers
the deciding policy's distribution before exploration (the uniform ``epsilon`` share removed),
and :func:`served_by_router` maps any policy's distribution onto what the router would serve
(masked models zeroed, renormalised), so the live version, a candidate and the logged traffic
are all valued on the same footing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from router_rl.logs.truth import LogTruth
    from router_rl.loop.world import LoopWorld


def allowed_mask(action_probs: np.ndarray, epsilon: float) -> np.ndarray:
    """``(n, k)`` models the router allowed per row: probability > 0 under exploration ``epsilon`` > 0.

    Raises:
        ValueError: ``epsilon`` is 0 (the mask cannot be read off a one-hot row).
    """
    if not epsilon > 0:
        raise ValueError("allowed_mask: the router's masks can only be read from rows logged with epsilon > 0")
    return np.asarray(action_probs, dtype=np.float64) > 0


def base_distribution(action_probs: np.ndarray, epsilon: float) -> np.ndarray:
    """The deciding policy's distribution before uniform ``epsilon`` exploration over the allowed models.

    ``logged = (1 - eps) * base + eps * uniform(allowed)``, so ``base = (logged - eps / n_allowed) / (1 - eps)``
    on the allowed models (0 elsewhere); tiny negative rounding is clipped and rows renormalised.
    """
    p = np.asarray(action_probs, dtype=np.float64)
    if epsilon <= 0:
        return p.copy()
    allowed = p > 0
    n_allowed = allowed.sum(axis=1, keepdims=True)
    base = np.where(allowed, (p - epsilon / np.maximum(n_allowed, 1)) / (1.0 - epsilon), 0.0)
    base = np.clip(base, 0.0, None)
    s = base.sum(axis=1, keepdims=True)
    return np.where(s > 0, base / np.where(s > 0, s, 1.0), allowed / np.maximum(n_allowed, 1))


def served_by_router(pi: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, int]:
    """``pi`` with the router's masks applied (disallowed models zeroed, rows renormalised).

    Returns:
        ``(distribution, rows)``: ``rows`` counts rows where ``pi`` had no mass on an allowed model
        (served uniformly over the allowed ones there).
    """
    p = np.where(allowed, np.asarray(pi, dtype=np.float64), 0.0)
    s = p.sum(axis=1, keepdims=True)
    empty = (s[:, 0] <= 0)
    uni = allowed / np.maximum(allowed.sum(axis=1, keepdims=True), 1)
    out = np.where(s > 0, p / np.where(s > 0, s, 1.0), uni)
    return out, int(empty.sum())


def round_truth(world: LoopWorld, request_ids: np.ndarray, rows: np.ndarray, round_: int) -> LogTruth:
    """:class:`~router_rl.logs.truth.LogTruth` of logged requests (``rows`` = their matrix rows) in round ``round_``."""
    from router_rl.logs.truth import LogTruth

    r = np.asarray(rows, dtype=np.int64)
    m = world.matrix
    loc = np.asarray([x == "local" for x in world.locations], dtype=np.float64)
    q = world.quality(r, round_)
    n, k = q.shape
    return LogTruth(
        request_ids=np.asarray(request_ids, dtype=object),
        task_ids=np.asarray(m.tasks["task_id"].cast(str).to_numpy()[r], dtype=object),
        models=world.models,
        locations=world.locations,
        quality=q,
        cost_usd=m.cost[r],
        latency_s=m.latency[r],
        local=np.broadcast_to(loc, (n, k)).copy(),
        model_quality=q,
        failed=np.zeros((n, k), dtype=bool),
        no_answer=np.zeros((n, k), dtype=bool),
    )


def utility(values: dict[str, float], lam: float, cost_ref_usd: float) -> float:
    """``quality - lam * cost_usd / cost_ref_usd`` (the OPE report's utility)."""
    return float(values["quality"] - lam * values["cost_usd"] / cost_ref_usd)
