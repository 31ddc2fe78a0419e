"""Simulated iterative refinement (TRM) on the simulated fleet, and refinement as a routing action.

* :class:`RefinementModel`: the assumed effect of judge-gated refinement (an assumption, not
  measured; docs/judge.md, *In the simulated fleet*).
* :func:`simulate_refinement`: the loop replayed cell by cell on :func:`simulate_fleet` output.
* :func:`with_refinement_actions`: the trace set with one more model per refined model,
  ``<model>+refine`` (the same model with refinement switched on), whose outcomes are the
  refined ones, so environments and policies trained on it learn *when refinement pays*
  (quality gained against cost and latency paid, per task).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from router_rl.traces.simulate import AGENT_TYPES, _sigmoid
from router_rl.traces.traceset import TraceSet

#: Suffix of the model id of a model with refinement switched on.
REFINE_SUFFIX = "+refine"


@dataclass(frozen=True)
class RefinementModel:
    """Assumed effect of judge-gated refinement on a simulated answer (an assumption, not measured).

    After ``k`` follow-up iterations (the failure report sent back, the answer regenerated) the
    probability that the answer passes is::

        p_k = sigmoid(logit(p_0) + gain * (1 - decay**k) / (1 - decay))

    so each iteration adds ``decay`` times the previous iteration's logit gain (diminishing
    returns, at most ``gain / (1 - decay)`` in total). With the defaults a task at ``p_0 = 0.3``
    reaches 0.355 after one iteration and 0.399 after three. Every follow-up costs (and takes)
    ``iteration_cost`` times the first attempt (the conversation grows), and every attempt is
    judged (``judge_latency_s``).

    Attributes:
        gain: Logit gain of the first iteration.
        decay: Ratio of consecutive gains, in ``[0, 1)``.
        iteration_cost: Cost/latency of one follow-up relative to the first attempt.
        judge_latency_s: Seconds of one judge call.
    """

    gain: float = 0.25
    decay: float = 0.5
    iteration_cost: float = 1.2
    judge_latency_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.gain >= 0 and 0 <= self.decay < 1 and self.iteration_cost >= 0 and self.judge_latency_s >= 0):
            raise ValueError(f"RefinementModel: expected gain >= 0, 0 <= decay < 1, costs >= 0; got {self!r}")

    def p_after(self, p0: np.ndarray, k: int) -> np.ndarray:
        """Pass probability after ``k`` iterations."""
        p = np.clip(np.asarray(p0, dtype=np.float64), 1e-6, 1 - 1e-6)
        boost = self.gain * (1 - self.decay**k) / (1 - self.decay)
        return _sigmoid(np.log(p / (1 - p)) + boost)


def simulate_refinement(
    ts: TraceSet,
    policy: dict[str, tuple[int, float]],
    *,
    seed: int = 0,
    model: RefinementModel | None = None,
) -> pl.DataFrame:
    """Replay judge-gated refinement on a simulated trace set (``simulate_fleet`` output).

    For every cell of a model in ``policy`` (``model -> (max_iterations, threshold)``): an
    attempt *passes* when its quality is >= the threshold. A recorded error is not refined. A
    failing first attempt is regenerated up to ``max_iterations`` times; iteration ``k``
    passes with the conditional probability ``(p_k - p_{k-1}) / (1 - p_{k-1})`` from
    :class:`RefinementModel` and the cell's ground-truth ``p_success`` (seeded draws). A
    passing refined answer scores ``1.0`` (pass/fail agent types) or ``max(quality, threshold)``
    (graded ones); one that never passes keeps its first quality.

    Returns:
        One row per refined cell: ``task_id, model, complexity, agent_type, iterations,
        passed, base_quality, quality, base_cost_usd, cost_usd, base_latency_s, latency_s``.
    """
    if ts.ground_truth is None:
        raise ValueError("simulate_refinement: the trace set has no ground truth (use simulate_fleet's output)")
    rm = model or RefinementModel()
    unknown = sorted(set(policy) - set(ts.catalog.models))
    if unknown:
        raise ValueError(f"simulate_refinement: policy names models not in the catalog: {unknown}")
    for m, (max_it, threshold) in policy.items():
        if max_it < 0 or not 0 <= threshold <= 1:
            raise ValueError(f"simulate_refinement: policy[{m!r}]: expected cap >= 0 and threshold in [0, 1]")
    df = ts.outcomes.join(ts.ground_truth.select("task_id", "model", "p_success"), on=["task_id", "model"])
    df = df.filter(pl.col("model").is_in(list(policy))).sort("task_id", "model")
    cap = np.array([policy[m][0] for m in df["model"]], dtype=np.int64)
    thr = np.array([policy[m][1] for m in df["model"]])
    q0 = df["quality"].to_numpy()
    graded = np.array([AGENT_TYPES[a][2] for a in df["agent_type"]])
    errored = df["error"].is_not_null().to_numpy()
    p0 = df["p_success"].to_numpy()
    rng = np.random.default_rng([seed, 7])
    active = ~errored & (q0 < thr) & (cap > 0)
    iterations = np.zeros(len(df), dtype=np.int64)
    passed = ~errored & (q0 >= thr)
    prev = rm.p_after(p0, 0)
    for k in range(1, int(cap.max(initial=0)) + 1):
        pk = rm.p_after(p0, k)
        cond = (pk - prev) / np.maximum(1 - prev, 1e-12)
        u = rng.random(len(df))
        trying = active & (k <= cap)
        iterations = np.where(trying, k, iterations)
        success = trying & (u < cond)
        passed |= success
        active &= ~success
        prev = pk
    refined_q = np.where(graded, np.maximum(q0, thr), 1.0)
    quality = np.where(passed & (iterations > 0), refined_q, q0)
    factor = 1 + rm.iteration_cost * iterations
    base_cost, base_lat = df["cost_usd"].to_numpy(), df["latency_s"].to_numpy()
    return pl.DataFrame(
        {
            "task_id": df["task_id"],
            "model": df["model"],
            "complexity": df["complexity"],
            "agent_type": df["agent_type"],
            "iterations": iterations,
            "passed": passed,
            "base_quality": q0,
            "quality": quality,
            "base_cost_usd": base_cost,
            "cost_usd": base_cost * factor,
            "base_latency_s": base_lat,
            "latency_s": base_lat * factor + rm.judge_latency_s * (iterations + 1),
        }
    )


def with_refinement_actions(
    ts: TraceSet,
    policy: dict[str, tuple[int, float]],
    *,
    seed: int = 0,
    model: RefinementModel | None = None,
    suffix: str = REFINE_SUFFIX,
) -> TraceSet:
    """``ts`` plus, for every model of ``policy``, the action "that model, refined".

    The added model ``<model><suffix>`` has the base model's catalog entry (location, prices)
    and, per task, the outcome :func:`simulate_refinement` gives the cell: its quality after the
    loop, cost and latency of every attempt and judge call, tokens scaled like the cost. A
    recorded error stays an error. A policy choosing between ``m`` and ``m+refine`` per task is
    choosing whether refinement pays there; the live router does the same through its
    ``refine.agent_types`` / tiers (docs/judge.md).

    The result has no ground truth (its refined cells are draws of the refinement model).

    Raises:
        ValueError: as :func:`simulate_refinement`, or a model id that already ends in ``suffix``.
    """
    clash = sorted(m for m in policy if m.endswith(suffix) or f"{m}{suffix}" in ts.catalog.models)
    if clash:
        raise ValueError(f"with_refinement_actions: {clash} already refined (suffix {suffix!r})")
    f = simulate_refinement(ts, policy, seed=seed, model=model)
    factor = (f["cost_usd"] / f["base_cost_usd"]).fill_nan(1.0)
    base = ts.outcomes.join(f.select("task_id", "model"), on=["task_id", "model"], how="semi").sort("task_id", "model")
    f = f.sort("task_id", "model")
    added = base.with_columns(
        pl.concat_str([pl.col("model"), pl.lit(suffix)]).alias("model"),
        pl.Series("quality", f["quality"].to_numpy()),
        pl.Series("cost_usd", f["cost_usd"].to_numpy()),
        pl.Series("latency_s", f["latency_s"].to_numpy()),
        *[
            (pl.col(c).cast(pl.Float64) * pl.Series(factor.to_numpy())).round().cast(pl.Int64).alias(c)
            for c in ("input_tokens", "output_tokens") if c in base.columns
        ],
    )
    specs = [*ts.catalog, *(replace(ts.catalog[m], model=f"{m}{suffix}") for m in policy)]
    outcomes = pl.concat([ts.outcomes, added.select(ts.outcomes.columns)], how="vertical").sort("task_id", "model")
    meta = {**ts.meta, "refinement_actions": {m: list(v) for m, v in policy.items()}, "refinement_seed": seed}
    return TraceSet(outcomes=outcomes, catalog=type(ts.catalog)(specs), report=ts.report, meta=meta,
                    ground_truth=None)
