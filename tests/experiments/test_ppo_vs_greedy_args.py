"""experiments/ppo_vs_greedy.py states only its PPO differences; the rest is PPOConfig's own."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies.ppo import PPOConfig


def test_ppo_config_is_defaults_plus_the_experiment_settings(load_script: Callable[[str], ModuleType]) -> None:
    mod = load_script("experiments/ppo_vs_greedy.py")
    cfg = mod.parse_args([]).ppo_config()
    expected = PPOConfig(**mod.PPO_SETTINGS, total_timesteps=50_000)
    assert cfg == expected
    # no setting restated at PPOConfig's own default
    assert all(getattr(PPOConfig(), k) != v for k, v in mod.PPO_SETTINGS.items())
    over = mod.parse_args(["--ppo-opt", "ent_coef=0.0", "--ppo-opt", "net_arch=[16]", "--timesteps", "512"])
    cfg2 = over.ppo_config()
    assert cfg2.ent_coef == 0.0 and cfg2.net_arch == (16,) and cfg2.total_timesteps == 512
    quick = mod.parse_args(["--quick"]).ppo_config()
    assert quick.n_steps == mod.QUICK_PPO_SETTINGS["n_steps"] and quick.total_timesteps == 1024
    with pytest.raises(ConfigError, match=r"PPOConfig\.bogus"):
        mod.parse_args(["--ppo-opt", "bogus=1"]).ppo_config()
