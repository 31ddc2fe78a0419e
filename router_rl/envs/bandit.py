"""Contextual-bandit routing environment over a full-information outcome matrix.

One step = one task: the observation is the task's encoded features, the action the index of
the model that serves it, the reward the :class:`~router_rl.envs.spec.RewardSpec` value of
that cell. An episode is ``horizon`` tasks of the split, drawn by
:func:`~router_rl.envs.tables.sample_order` from ``self.np_random`` at ``reset``; its end is a
time limit, so it is reported as ``truncated`` (never ``terminated``). After the last step the
observation repeats the last task's features.

Seeding scheme shared with :class:`RoutingBanditVec`: episode ``b`` of a batch reset with
``seed=s`` is exactly the single environment reset with ``seed=s + b``; each episode owns a
generator built like gymnasium's (``PCG64(SeedSequence(seed))``) and the only random draw is
the episode's task order at reset, so rollouts match bit for bit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from router_rl.envs.spec import RewardSpec
from router_rl.envs.tables import RewardTables, build_tables, sample_order
from router_rl.traces.matrix import OutcomeMatrix


def _latency(x: float) -> float | None:
    """Latency for ``info``: ``None`` when unknown (NaN would break equality checks)."""
    return None if x != x else float(x)


def _make_rng(seed: int) -> np.random.Generator:
    from gymnasium.utils import seeding

    rng, _ = seeding.np_random(seed)
    return rng


class RoutingBandit(gym.Env[np.ndarray, np.int64]):
    """One task per step; choose the model that serves it.

    Args:
        matrix: Outcomes of the served split only (train and test are never mixed).
        features: ``(n_tasks, d)`` encoded features aligned with ``matrix`` rows.
        reward: Reward spec (``cost_ref_usd="auto"`` resolved on ``matrix``; pass a resolved
            spec to share the scale across splits, as :func:`router_rl.envs.make` does).
        horizon: Tasks per episode (``None``: the whole split).
        episode: ``"sample"`` or ``"sequential"`` (see :func:`sample_order`).
        private: ``(n_tasks,)`` bool mask of privacy-tagged tasks (default: the tasks'
            ``privacy`` column when present).
        obs_clip: Box bound of the features.
        tables: Prebuilt tables (skips validation; used by ``from_tables``).

    ``info`` of every step: ``task_id``, ``task_index``, ``quality``, ``cost``, ``latency``
    (``None`` when unknown; the batched form uses NaN),
    ``is_local``, ``privacy_violation``, ``oracle_action``, ``oracle_value``, ``regret``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        matrix: OutcomeMatrix | None = None,
        features: np.ndarray | None = None,
        reward: RewardSpec | None = None,
        *,
        horizon: int | None = 256,
        episode: str = "sample",
        private: np.ndarray | None = None,
        obs_clip: float = 10.0,
        tables: RewardTables | None = None,
    ) -> None:
        super().__init__()
        if tables is None:
            if matrix is None or features is None:
                raise TypeError("RoutingBandit needs (matrix, features) or tables=")
            tables = build_tables(matrix, features, reward or RewardSpec(), private=private, obs_clip=obs_clip)
        if episode not in ("sample", "sequential"):
            raise ValueError(f"episode: expected 'sample' or 'sequential', got {episode!r}")
        if horizon is not None and horizon <= 0:
            raise ValueError(f"horizon: expected > 0 or None, got {horizon}")
        self.tables = tables
        self.horizon = horizon
        self.episode = episode
        self.obs_clip = float(obs_clip)
        self.observation_space = spaces.Box(-self.obs_clip, self.obs_clip, shape=(tables.dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(tables.n_models)
        self._order = np.zeros(0, dtype=np.int64)
        self._t = 0

    @classmethod
    def from_tables(
        cls, tables: RewardTables, *, horizon: int | None = 256, episode: str = "sample", obs_clip: float = 10.0
    ) -> RoutingBandit:
        """Build from precomputed :class:`RewardTables`."""
        return cls(tables=tables, horizon=horizon, episode=episode, obs_clip=obs_clip)

    @property
    def models(self) -> tuple[str, ...]:
        """Model ids, the meaning of each action."""
        return self.tables.models

    def current_task(self) -> int:
        """Index (into the split) of the task the next step serves."""
        return int(self._order[min(self._t, self._order.size - 1)])

    def current_rewards(self) -> np.ndarray:
        """Full-information reward of every model for the current task (for oracles/baselines)."""
        return self.tables.reward[self.current_task()].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode; the task order is drawn from ``self.np_random``."""
        super().reset(seed=seed)
        self._order = sample_order(self.np_random, self.tables.n_tasks, self.horizon, self.episode)
        self._t = 0
        i = int(self._order[0])
        return self.tables.features[i].copy(), {"task_id": self.tables.task_ids[i], "task_index": i}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Serve the current task with model ``action``."""
        if self._t >= self._order.size:
            raise RuntimeError("RoutingBandit.step called after the episode ended; call reset()")
        a = int(action)
        if not 0 <= a < self.tables.n_models:
            raise ValueError(f"action {action!r} outside Discrete({self.tables.n_models})")
        tb = self.tables
        i = int(self._order[self._t])
        r = float(tb.reward[i, a])
        info = {
            "task_id": tb.task_ids[i],
            "task_index": i,
            "quality": float(tb.quality[i, a]),
            "cost": float(tb.cost[i, a]),
            "latency": _latency(tb.latency[i, a]),
            "is_local": bool(tb.is_local[a]),
            "privacy_violation": bool(tb.private[i] and not tb.is_local[a]),
            "oracle_action": int(tb.oracle_action[i]),
            "oracle_value": float(tb.oracle_value[i]),
            "regret": float(tb.oracle_value[i] - r),
        }
        self._t += 1
        truncated = self._t >= self._order.size
        nxt = i if truncated else int(self._order[self._t])
        return tb.features[nxt].copy(), r, False, truncated, info


class RoutingBanditVec:
    """``B`` independent :class:`RoutingBandit` episodes stepped together with numpy.

    ``reset(seed=s)`` seeds episode ``b`` with ``s + b`` (see the module docstring), so episode
    ``b`` equals ``RoutingBandit.reset(seed=s + b)`` step for step; ``reset()`` without a seed
    continues each episode's own generator, like a single env reset without a seed. All
    episodes have the same length; after they end, call ``reset`` again.

    ``step(actions)`` returns ``(obs (B, d) float32, rewards (B,), terminated (B,), truncated
    (B,), info)`` where ``info`` holds ``(B,)`` arrays with the single env's info keys.
    """

    def __init__(
        self,
        tables: RewardTables,
        num_envs: int,
        *,
        horizon: int | None = 256,
        episode: str = "sample",
        obs_clip: float = 10.0,
    ) -> None:
        if num_envs <= 0:
            raise ValueError(f"num_envs: expected > 0, got {num_envs}")
        self.tables = tables
        self.num_envs = int(num_envs)
        self.horizon = horizon
        self.episode = episode
        self.single_observation_space = spaces.Box(-obs_clip, obs_clip, shape=(tables.dim,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(tables.n_models)
        self._rngs: list[np.random.Generator] | None = None
        self._order = np.zeros((self.num_envs, 0), dtype=np.int64)
        self._t = 0
        self._rows = np.arange(self.num_envs)

    @classmethod
    def from_env(cls, env: RoutingBandit, num_envs: int) -> RoutingBanditVec:
        """Batched twin of a single environment (same tables, horizon, episode mode)."""
        return cls(env.tables, num_envs, horizon=env.horizon, episode=env.episode, obs_clip=env.obs_clip)

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start ``B`` episodes (episode b seeded with ``seed + b``)."""
        if seed is not None:
            self._rngs = [_make_rng(seed + b) for b in range(self.num_envs)]
        elif self._rngs is None:
            seeds = np.random.SeedSequence().generate_state(1)
            self._rngs = [_make_rng(int(seeds[0]) + b) for b in range(self.num_envs)]
        n = self.tables.n_tasks
        self._order = np.stack([sample_order(g, n, self.horizon, self.episode) for g in self._rngs])
        self._t = 0
        idx = self._order[:, 0]
        return self.tables.features[idx], {"task_index": idx.copy()}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Serve the current task of every episode; ``actions`` is ``(B,)`` ints."""
        T = self._order.shape[1]
        if self._t >= T:
            raise RuntimeError("RoutingBanditVec.step called after the episodes ended; call reset()")
        a = np.asarray(actions, dtype=np.int64)
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions: expected shape ({self.num_envs},), got {a.shape}")
        if a.min() < 0 or a.max() >= self.tables.n_models:
            raise ValueError(f"actions outside Discrete({self.tables.n_models})")
        tb = self.tables
        i = self._order[:, self._t]
        r = tb.reward[i, a]
        self._t += 1
        done = self._t >= T
        nxt = i if done else self._order[:, self._t]
        info = {
            "task_index": i,
            "quality": tb.quality[i, a],
            "cost": tb.cost[i, a],
            "latency": tb.latency[i, a],
            "is_local": tb.is_local[a],
            "privacy_violation": tb.private[i] & ~tb.is_local[a],
            "oracle_action": tb.oracle_action[i],
            "oracle_value": tb.oracle_value[i],
            "regret": tb.oracle_value[i] - r,
        }
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.full(self.num_envs, done, dtype=bool)
        return tb.features[nxt], r, terminated, truncated, info

    @property
    def done(self) -> bool:
        """True once every episode has ended."""
        return self._t >= self._order.shape[1]
