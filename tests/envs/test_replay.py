"""Rejection-sampling replay vs exact evaluation on full-information data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def _logged_data(quality: list[float], *, fallback_row: int | None = None) -> Any:
    from router_rl.logs.data import LoggedData

    n = len(quality)
    probs = np.tile([0.5, 0.3, 0.2], (n, 1))
    actions = np.arange(n) % 3
    outcome = actions.copy()
    fb = np.zeros(n, dtype=bool)
    if fallback_row is not None:
        outcome[fallback_row] = (actions[fallback_row] + 1) % 3
        fb[fallback_row] = True
    return LoggedData(
        models=("a", "b", "c"), locations=("local", "local", "cloud"),
        X=np.arange(2 * n, dtype=np.float32).reshape(n, 2) / n, actions=actions,
        propensities=probs[np.arange(n), actions], logging_probs=probs, quality=np.array(quality),
        cost_usd=np.full(n, 0.01), latency_s=np.full(n, np.nan), outcome_actions=outcome, fallback=fb,
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
    )


def test_from_logged_credits_the_chosen_action_and_refuses_unlabeled_rows() -> None:
    spec = RewardSpec(cost_ref_usd=0.01, cost_weight=0.5)
    data = _logged_data([1.0, 0.0, 0.5, 1.0, 0.25, 0.75], fallback_row=2)
    env = LoggedReplay.from_logged(data, spec)
    np.testing.assert_allclose(env.rewards, np.array([1.0, 0.0, 0.5, 1.0, 0.25, 0.75]) - 0.5)
    np.testing.assert_array_equal(env.logged_actions, [0, 1, 2, 0, 1, 2])  # row 2: chosen, not the fallback
    np.testing.assert_allclose(env.propensities, [0.5, 0.3, 0.2] * 2)
    unl = _logged_data([1.0, np.nan, 0.5, np.nan, 0.25, 0.75])
    with pytest.raises(ValueError, match="2 of 6 rows have no label yet"):
        LoggedReplay.from_logged(unl, spec)
    env = LoggedReplay.from_logged(unl, spec, unlabeled="drop")
    assert env.n_dropped_unlabeled == 2 and env.X.shape[0] == 4
    np.testing.assert_array_equal(env.logged_actions, [0, 2, 1, 2])
    env.reset()
    for a in (0, 1, 1, 2):
        env.step(a)
    res = env.result()
    exp = replay_evaluate(env.rewards, env.logged_actions, np.array([0, 1, 1, 2]), env.propensities)
    assert res == exp
    with pytest.raises(ValueError, match="no labeled row"):
        LoggedReplay.from_logged(_logged_data([np.nan, np.nan]), spec, unlabeled="drop")


def test_from_logged_on_a_simulated_log_recovers_the_true_value() -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.simulate import LogSimulationConfig, simulate_log
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    ts = simulate_fleet(300, seed=1)
    m = ts.matrix()
    enc = FeatureEncoder(EncoderConfig().restricted_to(m.tasks.columns)).fit(m.tasks)
    logging = make_policy("random", m.models).attach_encoder(enc)
    log = simulate_log(ts, logging, n=20_000, seed=3, config=LogSimulationConfig(fallback_rate=0.1))
    data = log.logged()
    env = LoggedReplay.from_logged(data, RewardSpec(cost_ref_usd=1.0))
    target = np.full(data.n, data.model_index("claude-sonnet-4.5"))
    res = replay_evaluate(env.rewards, env.logged_actions, target, env.propensities)
    pi = np.zeros((data.n, data.k))
    pi[:, target[0]] = 1.0
    true = log.truth.value(pi)["quality"]  # fallbacks included, as the replay credits them
    lo, hi = res.ci
    assert lo <= true <= hi and hi - lo < 0.05
