"""Rejection-sampling replay vs exact evaluation on full-information data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from router_rl.envs import LoggedReplay, RewardSpec, replay_evaluate
from router_rl.traces.schema import DECISION_LOG_SCHEMA


def _full_info(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    p = 1 / (1 + np.exp(-(X[:, :1] * np.arange(1, m + 1) - 0.5 * np.arange(m))))
    R = (rng.random((n, m)) < p).astype(float)  # Bernoulli rewards, full information
    return X, R


def test_replay_matches_exact_value_under_uniform_logging() -> None:
    n, m = 30_000, 4
    X, R = _full_info(n, m, seed=1)
    target = (X[:, 0] > 0).astype(np.int64) * 3  # a deterministic context-dependent policy
    exact = R[np.arange(n), target].mean()
    rng = np.random.default_rng(2)
    hits = 0
    for rep in range(5):
        logged = rng.integers(0, m, size=n)
        res = replay_evaluate(R[np.arange(n), logged], logged, target)
        lo, hi = res.ci
        assert lo < res.value < hi
        assert abs(res.n_matched - n / m) < 5 * np.sqrt(n / m)
        hits += lo <= exact <= hi
        assert abs(res.value - exact) < 0.03, rep
    assert hits >= 4  # a 95% CI covers the exact value (almost) every time


def test_weighted_replay_handles_non_uniform_logging_and_stochastic_targets() -> None:
    n, m = 40_000, 3
    _, R = _full_info(n, m, seed=3)
    rng = np.random.default_rng(4)
    probs = np.array([0.6, 0.3, 0.1])
    logged = rng.choice(m, size=n, p=probs)
    target_dist = np.tile([0.2, 0.3, 0.5], (n, 1))
    exact = (R * target_dist).sum(axis=1).mean()
    res = replay_evaluate(R[np.arange(n), logged], logged, target_dist, probs[logged])
    assert res.ci[0] <= exact <= res.ci[1]
    # ignoring the propensities is biased towards the over-logged action
    naive = replay_evaluate(R[np.arange(n), logged], logged, target_dist)
    assert abs(naive.value - exact) > abs(res.value - exact)


def test_replay_env_equals_function_and_counts_only_matches() -> None:
    n, m = 500, 3
    X, R = _full_info(n, m, seed=5)
    logged = np.random.default_rng(6).integers(0, m, size=n)
    env = LoggedReplay(X, logged, R[np.arange(n), logged], m)
    obs, _ = env.reset(seed=0)
    acts, total, matched = [], 0.0, 0
    done = False
    while not done:
        a = int(obs[0] > 0) * 2
        acts.append(a)
        obs, r, term, trunc, info = env.step(a)
        assert term is False
        total += r
        matched += info["matched"]
        assert info["matched"] == (a == logged[info["event"]])
        done = trunc
    res = env.result()
    ref = replay_evaluate(R[np.arange(n), logged], logged, np.array(acts))
    assert res == ref
    assert res.n_matched == matched and res.value == pytest.approx(total / matched)


def _log_frame(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(8)
    models = ["m0", "m1", "m2"]
    chosen = rng.integers(0, 3, size=n)
    rows = {
        "request_id": [f"r{i}" for i in range(n)],
        "ts": [datetime(2025, 1, 1, tzinfo=UTC)] * n,
        "chosen_model": [models[c] for c in chosen],
        "propensity": [1 / 3] * n,
        "action_models": [models] * n,
        "action_probs": [[1 / 3] * 3] * n,
        "policy_version": ["uniform@1"] * n,
        "features": [[float(i), 1.0] for i in range(n)],
        "quality": rng.random(n).round(3).tolist(),
        "cost_usd": (rng.random(n) * 0.01).tolist(),
        "latency_s": (rng.random(n) * 5).tolist(),
    }
    schema = {k: DECISION_LOG_SCHEMA[k] for k in rows}
    return pl.DataFrame(rows, schema=schema)


def test_from_decision_log_frame_computes_rewards_from_the_reward_spec() -> None:
    log = _log_frame(20)
    spec = RewardSpec(cost_weight=2.0, latency_weight=0.5, cost_ref_usd=0.01, latency_slo_s=10.0)
    env = LoggedReplay.from_log(log, spec, obs_clip=100.0)
    q, c, lat = log["quality"].to_numpy(), log["cost_usd"].to_numpy(), log["latency_s"].to_numpy()
    np.testing.assert_allclose(env.rewards, q - 2.0 * c / 0.01 - 0.5 * lat / 10.0)
    assert env.logged_actions.tolist() == [int(s[1]) for s in log["chosen_model"]]
    assert env.observation_space.shape == (2,)


def test_from_log_rejects_unlabelled_rows_and_unknown_models() -> None:
    log = _log_frame(6).with_columns(
        pl.when(pl.col("request_id").is_in(["r2", "r4"])).then(None).otherwise(pl.col("quality")).alias("quality")
    )
    with pytest.raises(ValueError, match=r"rows \[2, 4\], column 'quality'"):
        LoggedReplay.from_log(log, RewardSpec(cost_ref_usd=1.0))
    with pytest.raises(ValueError, match="not in the action set"):
        LoggedReplay.from_log(_log_frame(4), RewardSpec(cost_ref_usd=1.0), models=["m0", "m1"])


def test_replay_evaluate_input_errors() -> None:
    with pytest.raises(ValueError, match="propensities must be in"):
        replay_evaluate(np.ones(3), np.zeros(3), np.zeros(3), np.array([0.5, 0.0, 0.2]))
    with pytest.raises(ValueError, match="target_actions has shape"):
        replay_evaluate(np.ones(3), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        replay_evaluate(np.array([1.0, np.nan]), np.zeros(2), np.zeros(2))
    none = replay_evaluate(np.ones(3), np.zeros(3), np.ones(3))
    assert none.n_matched == 0 and np.isnan(none.value)
