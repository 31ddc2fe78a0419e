"""The judge's strict config: validated on construction, errors name the field."""

from __future__ import annotations

import pytest

from router_rl.core.errors import ConfigError
from router_rl.judge.config import JudgeConfig, MutationBudget, SandboxLimits, ScoreWeights


def test_defaults_sum_to_one() -> None:
    w = ScoreWeights()
    assert sum(w.model_dump().values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"weights": {"mutation": -0.1}}, "weights.mutation"),
        ({"weights": {"bogus": 1.0}}, "weights.bogus"),
        ({"limits": {"memory_mb": 10}}, "limits.memory_mb"),
        ({"mutation": {"workers": 0}}, "mutation.workers"),
        ({"mutation": {"operators": ["comparison", "nope"]}}, "mutation"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        JudgeConfig.from_dict(data, source="judge.yaml")
    assert str(e.value).startswith(f"judge.yaml: {field}")


def test_all_zero_weights_rejected() -> None:
    zero = dict.fromkeys(ScoreWeights().model_dump(), 0.0)
    with pytest.raises(ValueError, match="at least one weight"):
        ScoreWeights(**zero)


def test_per_test_timeout_cannot_exceed_wall() -> None:
    with pytest.raises(ValueError, match="per_test_timeout_s"):
        SandboxLimits(wall_timeout_s=2.0, per_test_timeout_s=3.0)


def test_frozen_and_yaml_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "judge.yaml"
    p.write_text("mutation:\n  max_mutants: 7\nweights:\n  mutation: 0.5\n")
    cfg = JudgeConfig.from_yaml(p)
    assert cfg.mutation.max_mutants == 7 and cfg.weights.mutation == 0.5
    assert cfg.mutation == MutationBudget(max_mutants=7)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        cfg.mutation.max_mutants = 3  # type: ignore[misc]
