"""Small, hand-made experiments showing why routing is a *sequential* problem.

* :func:`pacing_vs_greedy`: a day whose easy tasks come first and hard tasks last. A greedy
  per-request policy (best reward for the request at hand) spends the whole budget on the
  early easy tasks; a budget-pacing policy that only buys the premium model when its quality
  gain per dollar clears a price fitted so that the budget lasts the day does strictly better.
  With ``n`` easy tasks (local 0.9 / cloud 1.0 quality), ``n`` hard tasks (local 0.1 / cloud
  1.0), cloud at $1, local free and a budget of ``$n``: greedy earns ``n*1.0 + n*0.1 = 1.1n``,
  pacing ``n*0.9 + n*1.0 = 1.9n``.
* :func:`outage_riding`: the cloud provider goes down and up (Markov); a greedy policy keeps
  sending requests into the outage, a breaker-aware policy serves from the local model while
  the breaker is open, so it only loses the first request of each outage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from router_rl.envs.budgeted import BudgetedRouting
from router_rl.envs.spec import BudgetSpec, FallbackSpec, OutageSpec, ProviderRates, RewardSpec
from router_rl.envs.tables import build_tables
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.matrix import OutcomeMatrix

LOCAL_MODEL = "local-small"
CLOUD_MODEL = "cloud-large"


@dataclass(frozen=True)
class PolicyComparison:
    """Returns of two policies on the same episodes.

    Attributes:
        greedy: Per-episode return of the greedy per-request policy.
        sequential: Per-episode return of the sequential (pacing / breaker-aware) policy.
        greedy_quality / sequential_quality: Mean served quality per task.
    """

    greedy: np.ndarray
    sequential: np.ndarray
    greedy_quality: float
    sequential_quality: float

    @property
    def advantage(self) -> float:
        """Mean return of the sequential policy minus that of greedy."""
        return float(self.sequential.mean() - self.greedy.mean())


def two_model_matrix(q_local: np.ndarray, q_cloud: np.ndarray, cost_cloud: float = 1.0) -> OutcomeMatrix:
    """A hand-made two-model matrix: a free local model and a priced cloud model.

    Task features are a one-hot ``hard`` flag (``q_cloud - q_local > 0.5``) plus a constant.
    """
    n = len(q_local)
    ids = [f"t{i:04d}" for i in range(n)]
    df = pl.DataFrame(
        {
            "task_id": ids * 2,
            "model": [LOCAL_MODEL] * n + [CLOUD_MODEL] * n,
            "quality": np.concatenate([q_local, q_cloud]).astype(float),
            "cost_usd": np.concatenate([np.zeros(n), np.full(n, cost_cloud)]),
            "latency_s": np.concatenate([np.full(n, 1.0), np.full(n, 2.0)]),
            "category": (["hard" if qc - ql > 0.5 else "easy" for ql, qc in zip(q_local, q_cloud, strict=True)]) * 2,
        }
    )
    cat = ModelCatalog(
        [
            ModelSpec(LOCAL_MODEL, "ollama", "local"),
            ModelSpec(CLOUD_MODEL, "cloudco", "cloud", usd_per_m_input=1.0, usd_per_m_output=1.0),
        ]
    )
    return OutcomeMatrix.from_frame(df, catalog=cat, source="hand-made")


def _features(matrix: OutcomeMatrix) -> np.ndarray:
    hard = (matrix.tasks["category"] == "hard").to_numpy().astype(np.float32)
    return np.stack([hard, np.ones_like(hard)], axis=1)


def _run(env: BudgetedRouting, policy: str, seed: int, price: float = 0.0) -> tuple[float, float]:
    obs, _ = env.reset(seed=seed)
    total, qual, steps, done = 0.0, 0.0, 0, False
    health_col = env.feature_dim + 3
    while not done:
        r = env.current_rewards()
        c = env.current_costs()
        if policy == "greedy":
            a = int(np.argmax(r))
        elif policy == "pacing":
            cheap = int(np.argmin(c))
            gain = (r - r[cheap]) / np.maximum(c - c[cheap], 1e-12)
            ok = (gain >= price) | (np.arange(len(r)) == cheap)
            a = int(np.argmax(np.where(ok, r, -np.inf)))
        elif policy == "breaker":
            a = int(np.argmax(r))
            if env.providers and obs[health_col] >= 1.0:  # breaker open: stay local
                a = env.models.index(LOCAL_MODEL)
        else:
            raise ValueError(f"unknown policy {policy!r}")
        obs, rew, term, trunc, info = env.step(a)
        total += rew
        qual += info["quality"]
        steps += 1
        done = term or trunc
    return total, qual / steps


def pacing_vs_greedy(n: int = 20, episodes: int = 3, seed: int = 0) -> PolicyComparison:
    """Budget pacing vs greedy on a day with ``n`` easy tasks followed by ``n`` hard ones.

    The pacing price is fitted on the same day's gain-per-dollar distribution: the largest price
    at which the premium purchases fit the budget (a primal-dual / knapsack threshold).
    """
    q_local = np.r_[np.full(n, 0.9), np.full(n, 0.1)]
    q_cloud = np.ones(2 * n)
    m = two_model_matrix(q_local, q_cloud)
    tables = build_tables(m, _features(m), RewardSpec(cost_ref_usd=1.0))
    env = BudgetedRouting(tables, BudgetSpec(usd=float(n)), horizon=None, episode="sequential")
    gains = np.sort(tables.reward[:, 1] - tables.reward[:, 0])[::-1]
    price = float(gains[n - 1])  # the n best purchases exactly use the budget
    g = [_run(env, "greedy", seed + k) for k in range(episodes)]
    p = [_run(env, "pacing", seed + k, price) for k in range(episodes)]
    return PolicyComparison(
        greedy=np.array([x[0] for x in g]),
        sequential=np.array([x[0] for x in p]),
        greedy_quality=float(np.mean([x[1] for x in g])),
        sequential_quality=float(np.mean([x[1] for x in p])),
    )


def outage_riding(
    n: int = 400, episodes: int = 5, seed: int = 0, p_fail: float = 0.05, p_recover: float = 0.2
) -> PolicyComparison:
    """Breaker-aware routing vs greedy when the cloud provider has Markov outages (no fallback)."""
    q_local = np.full(n, 0.6)
    q_cloud = np.full(n, 0.9)
    m = two_model_matrix(q_local, q_cloud, cost_cloud=0.001)
    tables = build_tables(m, _features(m), RewardSpec(cost_ref_usd=1.0, failure_penalty=1.0))
    outage = OutageSpec(enabled=True, default=ProviderRates(p_fail=p_fail, p_recover=p_recover))
    env = BudgetedRouting(
        tables, BudgetSpec(usd=1e6), outage=outage, fallback=FallbackSpec(enabled=False), horizon=None,
        episode="sequential",
    )
    g = [_run(env, "greedy", seed + k) for k in range(episodes)]
    b = [_run(env, "breaker", seed + k) for k in range(episodes)]
    return PolicyComparison(
        greedy=np.array([x[0] for x in g]),
        sequential=np.array([x[0] for x in b]),
        greedy_quality=float(np.mean([x[1] for x in g])),
        sequential_quality=float(np.mean([x[1] for x in b])),
    )
