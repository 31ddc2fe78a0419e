"""RouteLLM's similarity-weighted ranking (``sw-ranking``): a hand-computed example and RouteLLM's solver."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from router_rl.policies.sw_ranking import (
    SWRankingPolicy,
    bradley_terry,
    pairwise_wins,
    similarity_weights,
)
from router_rl.traces import OutcomeMatrix


def _matrix(quality: np.ndarray) -> OutcomeMatrix:
    n, m = quality.shape
    return OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": [f"t{i}" for i in range(n)]}),
        models=tuple(f"m{j}" for j in range(m)),
        quality=quality.astype(float),
        cost=np.tile(np.arange(1, m + 1, dtype=float) * 1e-3, (n, 1)),
        latency=np.ones((n, m)),
        error=np.zeros((n, m), dtype=bool),
        input_tokens=np.full((n, m), np.nan),
        output_tokens=np.full((n, m), np.nan),
    )


def test_hand_computed_two_task_example() -> None:
    # t1: m0 wins, t2: m1 wins. Standardised, unit-normed features are (.71, -.71) and (-.71, .71):
    # a query equal to t1 has similarities (1, -1) -> RouteLLM weights 10·10^1 = 100 and 10·10^-1 = 1.
    X = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    pol = SWRankingPolicy(("m0", "m1"), config={"ridge": 1e-12}).fit(X, _matrix(np.array([[1, 0], [0, 1]])), seed=0)
    np.testing.assert_allclose(similarity_weights(np.array([[1.0, -1.0]])), [[100.0, 1.0]])
    W = np.array([[[0.0, 100.0], [1.0, 0.0]]])  # m0 beat m1 with weight 100, m1 beat m0 with weight 1
    theta = bradley_terry(W, ridge=1e-12)
    np.testing.assert_allclose(theta[0], [math.log(10), -math.log(10)], atol=1e-7)
    # RouteLLM's strong win rate 1 / (1 + 10^((r_weak - r_strong) / 400)) on Elo = 400·log10-coef + 1000
    elo = 400 * theta[0] / math.log(10) + 1000
    assert 1 / (1 + 10 ** ((elo[1] - elo[0]) / 400)) == pytest.approx(100 / 101, abs=1e-9)
    # the weighted success rate is 0.5, so the shift is 0 and q̂ = σ(±ln 10) = (10/11, 1/11)
    np.testing.assert_allclose(pol.predict_quality(np.array([[1.0, 0.0]], dtype=np.float32)), [[10 / 11, 1 / 11]],
                               atol=1e-6)
    np.testing.assert_allclose(pol.predict_quality(np.array([[0.0, 1.0]], dtype=np.float32)), [[1 / 11, 10 / 11]],
                               atol=1e-6)


def test_pairwise_wins_counts_ties_half_or_not_at_all() -> None:
    q = np.array([[1.0, 0.0, 1.0]])
    half = pairwise_wins(q, ties="half")[0]
    np.testing.assert_array_equal(half, [[0, 1, 0.5], [0, 0, 0], [0.5, 1, 0]])
    np.testing.assert_array_equal(pairwise_wins(q, ties="drop")[0], [[0, 1, 0], [0, 0, 0], [0, 1, 0]])


def test_bradley_terry_equals_routellm_logistic_regression() -> None:
    """RouteLLM's ``compute_elo_mle_with_tie``: battles duplicated, a tie = one win each, unpenalised LR."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    m, n = 4, 60
    q = (rng.random((n, m)) < np.array([0.2, 0.4, 0.6, 0.8])).astype(float)
    w_task = rng.uniform(1, 100, n)
    rows, ys, ws = [], [], []
    for t in range(n):
        for a in range(m):
            for b in range(a + 1, m):
                x = np.zeros(m)
                x[a], x[b] = math.log(10), -math.log(10)
                res = "a" if q[t, a] > q[t, b] else "b" if q[t, a] < q[t, b] else "tie"
                for copy in (0, 1):  # RouteLLM duplicates every battle; a tie is A's win in copy 0 only
                    rows.append(x)
                    ys.append(1.0 if res == "a" or (res == "tie" and copy == 0) else 0.0)
                    ws.append(w_task[t])
    lr = LogisticRegression(fit_intercept=False, C=np.inf, max_iter=10_000, tol=1e-12)
    lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(ws))
    want = lr.coef_[0] * math.log(10)
    W = np.einsum("t,tjk->jk", w_task, pairwise_wins(q, ties="half"))[None]
    got = bradley_terry(W, ridge=1e-12)[0]
    np.testing.assert_allclose(got - got[0], want - want[0], atol=1e-4)
    assert got.argmax() == 3 and got.argmin() == 0


def test_more_similar_tasks_dominate_the_ranking(toy_splits) -> None:
    X, m = toy_splits["train"]
    pol = SWRankingPolicy(m.models).fit(X, m, seed=0)
    Xt, _ = toy_splits["test"]
    q = pol.predict_quality(Xt)
    # feature 0 drives the local models: their predicted success rises with it
    assert np.corrcoef(Xt[:, 0], q[:, 0])[0, 1] > 0.5
    assert pol.metadata["sw_ranking"]["ties"] == "half"
    assert 0 < pol.metadata["sw_ranking"]["decisive_share"] < 1
