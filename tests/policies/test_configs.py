"""One config idiom: every config is a strict, frozen pydantic model; errors are ConfigError naming the field."""

from __future__ import annotations

import pytest

from router_rl.core.config import StrictConfig
from router_rl.core.errors import ConfigError
from router_rl.envs.spec import EnvSpec
from router_rl.eval.independence import IndependenceConfig, PhaseGates
from router_rl.eval.runner import EvalConfig
from router_rl.policies.costmodel import CostModelSettings
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.lgbm import LGBMConfig
from router_rl.policies.ppo import PPOConfig
from router_rl.policies.supervised import MFConfig, MLPConfig
from router_rl.traces.simulate import SimulationConfig

ALL = [LGBMConfig, PPOConfig, CostModelSettings, DecisionConfig, EvalConfig, IndependenceConfig, PhaseGates,
       MLPConfig, MFConfig, SimulationConfig, EnvSpec]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_config_uses_the_strict_base(cls: type) -> None:
    assert issubclass(cls, StrictConfig)


@pytest.mark.parametrize(
    ("cls", "kwargs", "setting"),
    [
        (LGBMConfig, {"num_threads": True}, "LGBMConfig.num_threads"),
        (LGBMConfig, {"feature_fraction": "0.5"}, "LGBMConfig.feature_fraction"),
        (LGBMConfig, {"feature_fraction": 0.0}, "LGBMConfig.feature_fraction"),
        (LGBMConfig, {"calibration": "sigmoid"}, "LGBMConfig.calibration"),
        (LGBMConfig, {"extra_params": {"seed": 3}}, "LGBMConfig.extra_params"),
        (LGBMConfig, {"num_leaves": 1.0}, "LGBMConfig.num_leaves"),
        (LGBMConfig, {"bogus": 1}, "LGBMConfig.bogus"),
        (PPOConfig, {"n_steps": True}, "PPOConfig.n_steps"),
        (PPOConfig, {"learning_rate": "3e-4"}, "PPOConfig.learning_rate"),
        (PPOConfig, {"net_arch": [64, 0]}, "PPOConfig.net_arch.1"),
        (PPOConfig, {"batch_size": 60}, "PPOConfig.batch_size"),
        (CostModelSettings, {"holdout": 0.9}, "CostModelSettings.holdout"),
        (DecisionConfig, {"lam": float("inf")}, "DecisionConfig.lam"),
        (DecisionConfig, {"privacy_local_only": "yes"}, "DecisionConfig.privacy_local_only"),
        (EvalConfig, {"n_bootstrap": 5}, "EvalConfig.n_bootstrap"),
        (EvalConfig, {"lambdas": [0.1, -1.0]}, "EvalConfig.lambdas.1"),
        (MLPConfig, {"hidden": []}, "MLPConfig.hidden"),
        (MFConfig, {"dim": 0}, "MFConfig.dim"),
        (SimulationConfig, {"privacy_rate": 2.0}, "SimulationConfig.privacy_rate"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(cls: type, kwargs: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as ei:
        cls(**kwargs)
    assert ei.value.setting == setting
    assert str(ei.value).startswith(f"{setting}: ")


def test_configs_are_frozen_and_replace_validates() -> None:
    cfg = LGBMConfig(num_leaves=15)
    with pytest.raises(Exception, match="frozen"):
        cfg.num_leaves = 3  # type: ignore[misc]
    assert cfg.replace(max_bin=31).max_bin == 31 and cfg.replace(max_bin=31).num_leaves == 15
    with pytest.raises(ConfigError, match=r"LGBMConfig\.max_bin"):
        cfg.replace(max_bin=0)
    assert DecisionConfig(lam=0.5).with_(mu=0.1) == DecisionConfig(lam=0.5, mu=0.1)


@pytest.mark.parametrize("cls", [LGBMConfig, PPOConfig, CostModelSettings, DecisionConfig, EvalConfig, MLPConfig,
                                 MFConfig, SimulationConfig], ids=lambda c: c.__name__)
def test_saved_dict_round_trips(cls: type) -> None:
    import json

    cfg = cls()
    d = json.loads(json.dumps(cfg.to_dict()))  # what an artifact holds: lists, not tuples
    if cls is EvalConfig:
        d["independence"] = {"phases": d["independence"]}
    assert cls.from_dict(d) == cfg
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.nope: unknown setting"):
        cls.from_dict({**d, "nope": 1})


def test_tuple_fields_accept_lists_and_normalise() -> None:
    assert PPOConfig(net_arch=[32, 32]).net_arch == (32, 32)
    assert EvalConfig(lambdas=[1.0, 0.0, 1.0]).lambdas == (0.0, 1.0)
    assert MLPConfig(hidden=[8]).hidden == (8,)


def test_from_dict_with_python_values_is_as_strict_as_the_constructor() -> None:
    import numpy as np

    assert LGBMConfig.from_dict({"extra_params": {"w": np.arange(2)}}).extra_params["w"].tolist() == [0, 1]
    with pytest.raises(ConfigError, match=r"LGBMConfig\.num_threads"):
        LGBMConfig.from_dict({"num_threads": np.int64(2), "extra_params": {"w": np.arange(2)}})
    with pytest.raises(ConfigError, match=r"DecisionConfig\.lam"):
        DecisionConfig.from_dict({"lam": "0.5"})
