"""Gymnasium wrappers the PPO router trains through (gymnasium imported at the top).

* :class:`PriorObservation` prepends the base policy's prior score and normalised cost.
* :class:`BudgetJitter` starts each training day with part of the budget already spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from router_rl.policies.ppo.router import PPORouter

__all__ = ["BudgetJitter", "PriorObservation"]


class PriorObservation(gym.ObservationWrapper):
    """Prepends the base policy's prior score and normalised cost ``(2 · n_models,)`` to every observation."""

    def __init__(self, env: gym.Env, router: PPORouter) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"PPORouter: expected a 1-D Box observation space, got {space}")
        if space.shape[0] != router.obs_dim:
            raise ValueError(
                f"PPORouter: env observations have {space.shape[0]} columns, the router expects "
                f"{router.obs_dim} (feature_dim={router.feature_dim} + state_dim={router.state_dim})"
            )
        n_act = getattr(env.action_space, "n", None)
        if n_act != router.n_models:
            raise ValueError(f"PPORouter: env has {n_act} actions but the router has {router.n_models} models")
        self._router = router
        m = router.n_models
        lo = np.concatenate([np.full(2 * m, -np.inf), space.low])
        hi = np.concatenate([np.full(2 * m, np.inf), space.high])
        self.observation_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32).reshape(1, -1)
        return self._router.augment(obs)[0]


class BudgetJitter(gym.Wrapper):
    """Starts each day with ``U(0, high)`` of the budget spent (own seeded generator, no env draws)."""

    def __init__(self, env: gym.Env, high: float, seed: int | Sequence[int]) -> None:
        super().__init__(env)
        self._high = float(high)
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        opts = dict(options or {})
        opts.setdefault("spent_frac", float(self._rng.uniform(0.0, self._high)))
        return self.env.reset(seed=seed, options=opts)
