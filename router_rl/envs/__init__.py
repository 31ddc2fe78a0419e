"""Gymnasium environments built from routing traces.

Importing this package registers every spec of the top-level ``envs/`` folder as
``router_rl/<name>-v<version>`` (only the YAML files are read; data loads on ``make``)::

    import gymnasium as gym
    import router_rl.envs

    env = gym.make("router_rl/sim-bandit-v0", split="test")
    env = router_rl.envs.make("sim-budgeted", horizon=128)

Environments: :class:`RoutingBandit` (one task per step), :class:`BudgetedRouting` (a day of
traffic under a budget and provider outages), :class:`LoggedReplay` (rejection-sampling replay
of a decision log); batched twins :class:`RoutingBanditVec`, :class:`BudgetedRoutingVec`.
See ``docs/envs.md``.
"""

from router_rl.envs.bandit import RoutingBandit, RoutingBanditVec
from router_rl.envs.budgeted import BudgetedRouting, BudgetedRoutingVec
from router_rl.envs.data import EnvData, load_env_data
from router_rl.envs.outage import OutageModel, fit_llmperf_rates
from router_rl.envs.registry import make, make_from_spec, register_envs
from router_rl.envs.replay import LoggedReplay, ReplayResult, replay_evaluate
from router_rl.envs.spec import (
    BudgetSpec,
    DataSpec,
    DayMixSpec,
    EnvSpec,
    FallbackSpec,
    OutageSpec,
    PrivacySpec,
    ProviderRates,
    RewardSpec,
    SplitSpec,
    load_spec,
    specs_dir,
)
from router_rl.envs.tables import DayMix, RewardTables, build_tables

__all__ = [
    "BudgetSpec",
    "BudgetedRouting",
    "BudgetedRoutingVec",
    "DataSpec",
    "DayMix",
    "DayMixSpec",
    "EnvData",
    "EnvSpec",
    "FallbackSpec",
    "LoggedReplay",
    "OutageModel",
    "OutageSpec",
    "PrivacySpec",
    "ProviderRates",
    "ReplayResult",
    "RewardSpec",
    "RewardTables",
    "RoutingBandit",
    "RoutingBanditVec",
    "SplitSpec",
    "build_tables",
    "fit_llmperf_rates",
    "load_env_data",
    "load_spec",
    "make",
    "make_from_spec",
    "register_envs",
    "replay_evaluate",
    "specs_dir",
]

register_envs()
