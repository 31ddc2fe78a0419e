"""RouterConfig validation: every problem names the exact setting; rule strategies pick as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _router_helpers import router_config

from router_rl.core.errors import ConfigError
from router_rl.router.config import Strategy, load_config, parse_config
from router_rl.router.strategies import ModelTable, rule_choice

BASE = router_config("http://127.0.0.1:1", "http://127.0.0.1:2")


def _with(**kw: Any) -> dict[str, Any]:
    return router_config("http://127.0.0.1:1", "http://127.0.0.1:2", **kw)


@pytest.mark.parametrize(
    ("cfg", "setting", "problem"),
    [
        (_with(tiers={"complex": "gpt-9"}), "tiers.complex", "unknown model 'gpt-9'"),
        (_with(strategy="fastest"), "strategy", "Input should be"),
        (_with(quality_order=["cloud-large", "nope"]), "quality_order[1]", "unknown model 'nope'"),
        (_with(strategy="learned"), "learned", "none of policy_dir / endpoint / registry"),
        (_with(rollout={"percentage": 10}), "rollout", "needs a candidate strategy"),
        (_with(rollout={"candidate": "learned", "percentage": 5}), "learned", "none of policy_dir / endpoint"),
        (_with(breaker={"window": 3, "min_calls": 5}), "breaker", "min_calls (5) must be <= window (3)"),
        (_with(budgets={"on_exhausted": "panic"}), "budgets.on_exhausted", "Input should be"),
        (_with(fallback={"latency_threshold_s": 0}), "fallback.latency_threshold_s", "greater than 0"),
        (_with(expected_latency_s={"ghost": 1.0}), "expected_latency_s.ghost", "unknown model"),
        (_with(unknown_key=1), "unknown_key", "Extra inputs are not permitted"),
        (_with(exploration={"default": {"epsilon": 1.0}}), "exploration.default.epsilon", "expected < 1"),
        (_with(exploration={"agent_types": {"qe": {"temperature": 0}}}), "exploration.agent_types.qe.temperature",
         "greater than 0"),
        (_with(exploration={"strategies": {"fastest": {"epsilon": 0.1}}}), "exploration.strategies",
         "unknown strategy 'fastest'"),
        (_with(exploration={"default": {"epsilon": 0.1, "eps": 1}}), "exploration.default.eps", "unknown setting"),
        (_with(logging={"text_for_agent_types": "qe-gen"}), "logging.text_for_agent_types", "valid"),
    ],
)
def test_invalid_config_names_the_setting(cfg: dict[str, Any], setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg, source="router.yaml")
    assert ei.value.setting == setting
    assert problem in ei.value.problem
    assert str(ei.value).startswith(f"router.yaml: {setting}: ")


def test_provider_level_errors_name_the_index() -> None:
    cfg = _with()
    cfg["providers"][1] = {**cfg["providers"][1], "api_key": "sk-live-should-never-be-echoed"}
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg)
    assert ei.value.setting == "providers[1].api_key"
    assert "sk-live" not in str(ei.value)
    cfg = _with()
    cfg["providers"][0] = {**cfg["providers"][0], "base_url": "ftp://x"}
    with pytest.raises(ConfigError, match=r"providers\[0\]\.base_url: .*http://"):
        parse_config(cfg)
    cfg = _with()
    cfg["providers"][1] = {**cfg["providers"][1], "models": ["small-local"]}
    with pytest.raises(ConfigError, match="'small-local' is served by both 'local' and 'cloud'"):
        parse_config(cfg)


def test_load_config_resolves_relative_paths_and_reports_yaml_errors(tmp_path: Path) -> None:
    p = tmp_path / "router.yaml"
    p.write_text(yaml.safe_dump(_with(logging={"decision_log_dir": "dl"}, server={"auth": {"enabled": False}})))
    cfg = load_config(p, check_credentials=False)
    assert cfg.logging.decision_log_dir == tmp_path / "dl"
    p.write_text("providers: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_example_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parents[2] / "examples" / "router.yaml", check_credentials=False)
    assert cfg.strategy == Strategy.BALANCED
    assert cfg.resolved_quality_order()[0] == "claude-sonnet-4"


def test_rule_strategies_choose_as_documented() -> None:
    cfg = parse_config(_with(expected_latency_s={"small-local": 0.5, "big-local": 3.0, "cloud-large": 1.0}))
    t = ModelTable.from_config(cfg, cfg.build_catalog())
    every = list(t.models)
    local = ["small-local", "big-local"]
    assert t.capability == {"small-local": 1, "big-local": 2, "cloud-large": 3}
    assert [rule_choice(Strategy.BALANCED, t, lv, every) for lv in range(4)] == [
        "small-local", "small-local", "big-local", "cloud-large"]
    # privacy / local-only masks: very complex goes to the most capable local model
    assert rule_choice(Strategy.BALANCED, t, 3, local) == "big-local"
    assert rule_choice(Strategy.PRIVACY_FIRST, t, 3, every) == "big-local"
    assert rule_choice(Strategy.QUALITY_OPTIMIZED, t, 0, every) == "cloud-large"
    assert rule_choice(Strategy.QUALITY_OPTIMIZED, t, 0, local) == "big-local"
    # cost: cheapest capable (small local is cheapest for simple; only cloud handles very complex)
    assert rule_choice(Strategy.COST_OPTIMIZED, t, 0, every, prompt_chars=400, max_tokens=200) == "small-local"
    assert rule_choice(Strategy.COST_OPTIMIZED, t, 3, every, prompt_chars=400) == "cloud-large"
    # latency: fastest capable model
    assert rule_choice(Strategy.LATENCY_OPTIMIZED, t, 2, every) == "cloud-large"
    assert rule_choice(Strategy.LATENCY_OPTIMIZED, t, 2, local) == "big-local"
    with pytest.raises(ValueError, match="no allowed model"):
        rule_choice(Strategy.BALANCED, t, 0, [])


def test_exploration_precedence_is_agent_type_then_strategy_then_default() -> None:
    ex = parse_config(_with(exploration={
        "default": {"epsilon": 0.05},
        "strategies": {"learned": {"epsilon": 0.1, "temperature": 2.0}},
        "agent_types": {"qe-flaky": {"epsilon": 0.3}},
    })).exploration
    assert ex.for_request("learned", "qe-flaky").to_log() == {"epsilon": 0.3}
    assert ex.for_request("learned", "qe-gen").to_log() == {"epsilon": 0.1, "temperature": 2.0}
    assert ex.for_request("balanced", None).to_log() == {"epsilon": 0.05}
    assert parse_config(BASE).exploration.for_request("balanced", "qe-flaky") is None


def test_features_encoder_path_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(_with(features={"encoder_path": "enc/encoder.json"})))
    cfg = load_config(tmp_path / "router.yaml", check_credentials=False)
    assert cfg.features.encoder_path == tmp_path / "enc" / "encoder.json"
