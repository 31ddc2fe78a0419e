"""FederatedConfig validation and run_config / pyproject round trips (fast, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router_rl.core.errors import ConfigError
from router_rl.federated.config import FederatedConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_rounds", 0),
        ("lr", -1.0),
        ("lora_r", 0),
        ("lora_dropout", 1.0),
        ("fraction_train", 0.0),
        ("fraction_evaluate", 1.5),
        ("batch_size", 0),
        ("target_modules", ()),
        ("agent_types", ("test-generator", "test-generator")),
        ("seed", -3),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        FederatedConfig.create(None, base_model_path=Path("/m"), **{field: value})
    assert info.value.setting == field
    assert field in str(info.value)


def test_unknown_agent_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown agent type.*'nope'"):
        FederatedConfig.create(base_model_path=Path("/m"), agent_types=("test-generator", "nope"))


def test_extra_fields_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        FederatedConfig.create(base_model_path=Path("/m"), roundz=3)
    assert info.value.setting == "roundz"


def test_run_config_round_trip_and_unknown_key() -> None:
    cfg = FederatedConfig(base_model_path=Path("/m"), agent_types=("code-reviewer", "test-generator"), lora_r=4)
    rc = cfg.to_run_config()
    assert rc["agent-types"] == "code-reviewer,test-generator"
    assert rc["lora-r"] == 4
    assert FederatedConfig.from_run_config(rc) == cfg
    with pytest.raises(ConfigError, match="num-roundz: unknown setting"):
        FederatedConfig.from_run_config({**rc, "num-roundz": 2}, source="x.toml")


def test_pyproject_app_config_is_valid() -> None:
    cfg = FederatedConfig.from_pyproject(ROOT / "pyproject.toml", num_rounds=2)
    assert cfg.num_rounds == 2
    assert cfg.base_model_path.is_absolute()
    assert cfg.num_clients == 4


def test_pyproject_components_point_at_apps() -> None:
    import tomllib

    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comps = doc["tool"]["flwr"]["app"]["components"]
    assert comps == {
        "serverapp": "router_rl.federated.server_app:app",
        "clientapp": "router_rl.federated.client_app:app",
    }
    assert "local-simulation" in doc["tool"]["flwr"]["federations"]
