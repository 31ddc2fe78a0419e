"""Helpers for the environment tests: hand-made outcome matrices, env-checker runner, rollouts.

Imported by module name (``from envs_helpers import ...``): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import polars as pl

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.matrix import OutcomeMatrix

MODELS = ("local-a", "local-b", "cloud-c")


def hand_matrix(
    quality: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray | None = None,
    *,
    private: list[bool] | None = None,
    split: list[str] | None = None,
) -> OutcomeMatrix:
    """A 3-model (2 local, 1 cloud) matrix from dense arrays via the real ``from_frame`` path."""
    n, m = quality.shape
    assert m == len(MODELS)
    ids = [f"t{i:03d}" for i in range(n)]
    lat = np.ones((n, m)) if latency is None else latency
    df = pl.DataFrame(
        {
            "task_id": [t for t in ids for _ in range(m)],
            "model": list(MODELS) * n,
            "quality": quality.ravel().astype(float),
            "cost_usd": cost.ravel().astype(float),
            "latency_s": lat.ravel().astype(float),
            "category": [("secret" if (private and private[i]) else "code") for i in range(n) for _ in range(m)],
            "privacy": [bool(private and private[i]) for i in range(n) for _ in range(m)],
            "split": [(split[i] if split else "train") for i in range(n) for _ in range(m)],
        }
    )
    cat = ModelCatalog(
        [
            ModelSpec("local-a", "ollama", "local"),
            ModelSpec("local-b", "vllm", "local"),
            ModelSpec("cloud-c", "cloudco", "cloud", usd_per_m_input=1.0, usd_per_m_output=2.0),
        ]
    )
    return OutcomeMatrix.from_frame(df, catalog=cat, source="hand-made")


def checks_clean(env: Any) -> list[str]:
    """Run the Gymnasium and SB3 env checkers; return every warning message they emitted."""
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a directly constructed env has no EnvSpec, so only the render-mode re-make is skipped
        gym_check_env(env.unwrapped, skip_render_check=env.unwrapped.spec is None)
        sb3_check_env(env.unwrapped)
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def rollout(env: Any, seed: int, policy: Callable[[int, np.ndarray], int]) -> list[tuple]:
    """One episode: ``[(obs, reward, terminated, truncated, info), ...]`` including the reset."""
    obs, info = env.reset(seed=seed)
    out: list[tuple] = [(obs, None, False, False, info)]
    t, done = 0, False
    while not done:
        obs, r, term, trunc, info = env.step(policy(t, obs))
        out.append((obs, r, term, trunc, info))
        t += 1
        done = term or trunc
    return out


def lockstep(vec: Any, singles: list[list[tuple]], policy: Callable[[int, np.ndarray], int], seed: int
             ) -> Iterator[tuple[int, int, dict, np.ndarray, tuple | None]]:
    """Step ``vec`` (reset with ``seed``) next to the recorded single-env ``singles`` (one per episode).

    Checks the reset observations, then per step and episode ``b`` the observation, reward and
    flags against the single env, and yields ``(t, b, batched info, batched rewards, single step)``
    for the caller's info checks; the single step is ``None`` once episode ``b`` has ended.
    """
    obs, _ = vec.reset(seed=seed)
    B = len(singles)
    for b in range(B):
        np.testing.assert_array_equal(obs[b], singles[b][0][0])
    t = 0
    while not vec.done:
        acts = np.array([policy(t, obs[b]) for b in range(B)])
        obs, r, term, trunc, info = vec.step(acts)
        t += 1
        for b in range(B):
            single = singles[b][t] if t < len(singles[b]) else None
            if single is not None:
                np.testing.assert_array_equal(obs[b], single[0])
                assert (r[b], term[b], trunc[b]) == tuple(single[1:4])
            yield t, b, info, r, single
