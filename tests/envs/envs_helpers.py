"""Helpers for the environment tests: hand-made outcome matrices, env-checker runner, rollouts.

Imported by module name (``from envs_helpers import ...``): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
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
