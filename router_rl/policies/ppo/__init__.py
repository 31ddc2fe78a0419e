"""PPO refinement of a base routing policy (normally the LightGBM router) on ``BudgetedRouting``.

One concept per module, as stable-baselines3 lays out its algorithms:

* :mod:`~router_rl.policies.ppo.config`: :class:`PPOConfig` (strict pydantic);
* the router-state part of an observation (``STATE_FIELDS``, ``state_vector``) is defined once in
  :mod:`router_rl.envs.state` (shared with the environments and the serving engine);
* :mod:`~router_rl.policies.ppo.networks`: the SB3 ``ActorCriticPolicy`` subclass (torch);
* :mod:`~router_rl.policies.ppo.wrappers`: gymnasium wrappers used in training;
* :mod:`~router_rl.policies.ppo.router`: :class:`PPORouter`, the registered ``ppo`` policy;
* :mod:`~router_rl.policies.ppo.train`: :func:`train_ppo`, the whole pipeline (data, LightGBM
  base, calibration, PPO, held-out days) that the CLI, the experiment and notebooks call.

Importing this package imports neither torch, gymnasium nor stable-baselines3 (``networks`` and
``wrappers`` are imported inside the methods that need them).
"""

from router_rl.policies.ppo.config import PRIOR_KINDS, PPOConfig
from router_rl.policies.ppo.router import PPO_FORMAT, PPORouter
from router_rl.policies.ppo.train import PPOTrainResult, fit_lgbm_base, train_ppo

__all__ = [
    "PPO_FORMAT",
    "PRIOR_KINDS",
    "PPOConfig",
    "PPORouter",
    "PPOTrainResult",
    "fit_lgbm_base",
    "train_ppo",
]
