"""RoutingBandit / RoutingBanditVec on hand-made matrices and the simulated-fleet specs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from envs_helpers import checks_clean, lockstep, rollout

import router_rl.envs as renvs
from router_rl.envs import RewardSpec, RoutingBandit, RoutingBanditVec, build_tables
from router_rl.traces.matrix import OutcomeMatrix


def test_reward_arithmetic_matches_hand_computation(small_matrix: OutcomeMatrix, small_features: np.ndarray) -> None:
    spec = RewardSpec(cost_weight=0.5, latency_weight=0.2, cost_ref_usd=0.02, latency_slo_s=4.0,
                      quality_floor=0.6, floor_penalty=0.3, privacy_penalty=2.0)
    env = RoutingBandit(small_matrix, small_features, spec, horizon=None, episode="sequential")
    env.reset(seed=0)
    for i in range(small_matrix.n_tasks):
        a = (i * 5) % 3
        _, r, term, trunc, info = env.step(a)
        q, c, lat = small_matrix.quality[i, a], small_matrix.cost[i, a], small_matrix.latency[i, a]
        private = i in (3, 7)
        penalty = (0.3 if q < 0.6 else 0.0) + (2.0 if private and a == 2 else 0.0)
        expected = q - 0.5 * c / 0.02 - 0.2 * lat / 4.0 - penalty
        assert r == pytest.approx(expected, abs=1e-12)
        assert info["privacy_violation"] == (private and a == 2)
        assert info["is_local"] == (a != 2)
        assert info["quality"] == q and info["cost"] == c and info["latency"] == lat
        all_r = [small_matrix.quality[i, j] - 0.5 * small_matrix.cost[i, j] / 0.02
                 - 0.2 * small_matrix.latency[i, j] / 4.0 - (0.3 if small_matrix.quality[i, j] < 0.6 else 0.0)
                 - (2.0 if private and j == 2 else 0.0) for j in range(3)]
        assert info["oracle_action"] == int(np.argmax(all_r))
        assert info["oracle_value"] == pytest.approx(max(all_r))
        assert info["regret"] == pytest.approx(max(all_r) - expected)
        assert term is False
        assert trunc == (i == small_matrix.n_tasks - 1)


def test_auto_cost_ref_is_mean_cost_of_most_expensive_model(small_matrix: OutcomeMatrix,
                                                           small_features: np.ndarray) -> None:
    tb = build_tables(small_matrix, small_features, RewardSpec(cost_weight=1.0))
    assert tb.reward_spec.cost_ref_usd == pytest.approx(small_matrix.cost[:, 2].mean())


def test_sampled_episode_uses_np_random_and_is_reproducible(small_matrix: OutcomeMatrix,
                                                           small_features: np.ndarray) -> None:
    env = RoutingBandit(small_matrix, small_features, horizon=5)
    a = rollout(env, 3, lambda t, o: t % 3)
    b = rollout(env, 3, lambda t, o: t % 3)
    c = rollout(env, 4, lambda t, o: t % 3)
    ids = lambda ro: [s[4]["task_id"] for s in ro]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert len(a) == 6 and a[-1][3] is True
    assert len(set(ids(a)[1:])) == 5  # without replacement


def test_vec_matches_single_exactly(small_matrix: OutcomeMatrix, small_features: np.ndarray) -> None:
    env = RoutingBandit(small_matrix, small_features, RewardSpec(cost_weight=0.3, latency_weight=0.1), horizon=7)
    B, seed = 4, 11
    vec = RoutingBanditVec.from_env(env, B)
    policy = lambda t, o: int(o[0] * 100 + t) % 3  # noqa: E731  depends on the observation
    singles = [rollout(env, seed + b, policy) for b in range(B)]
    last_t = 0
    for t, b, info, _r, single in lockstep(vec, singles, policy, seed):
        last_t = t
        assert single is not None  # every bandit episode has the same horizon
        for k in ("quality", "cost", "latency", "oracle_action", "oracle_value", "regret", "task_index",
                  "is_local", "privacy_violation"):
            assert info[k][b] == single[4][k], k
    assert last_t == 7
    # unseeded reset continues each episode's generator exactly like the single env
    env.reset(seed=seed + 1)
    o2, _ = env.reset()
    v2, _ = vec.reset()
    np.testing.assert_array_equal(v2[1], o2)


def test_step_validation(small_matrix: OutcomeMatrix, small_features: np.ndarray) -> None:
    env = RoutingBandit(small_matrix, small_features, horizon=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step(3)
    env.step(0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_feature_shape_mismatch_fails(small_matrix: OutcomeMatrix) -> None:
    with pytest.raises(ValueError, match=r"expected a \(12, d\) array"):
        RoutingBandit(small_matrix, np.zeros((11, 3), dtype=np.float32))


def test_checkers_have_zero_warnings_hand_made(small_matrix: OutcomeMatrix, small_features: np.ndarray) -> None:
    env = RoutingBandit(small_matrix, small_features, horizon=4)
    assert checks_clean(env) == []


@pytest.mark.parametrize("env_id", ["router_rl/sim-bandit-v0", "router_rl/sim-budgeted-v0"])
def test_shipped_sim_specs_pass_both_checkers(env_id: str) -> None:
    env = gym.make(env_id)
    assert checks_clean(env) == []
    env_test = gym.make(env_id, split="test")
    assert env_test.observation_space == env.observation_space
    tr = set(env.unwrapped.tables.task_ids)
    te = set(env_test.unwrapped.tables.task_ids)
    assert tr and te and not (tr & te)


def test_make_by_name_path_and_overrides() -> None:
    env = renvs.make("sim-bandit", split="val", horizon=8, reward={"cost_weight": 0.0})
    assert isinstance(env, RoutingBandit)
    assert env.horizon == 8 and env.tables.reward_spec.cost_weight == 0.0
    env2 = renvs.make(renvs.specs_dir() / "sim-bandit.yaml", split="val")
    assert env2.tables.task_ids == env.tables.task_ids
    assert "router_rl/sim-bandit-v0" in gym.registry
