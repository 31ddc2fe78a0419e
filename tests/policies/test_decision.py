"""The shared utility decision rule: propensities, exploration, constraints, escalation, validation."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies.calibration import ProbabilityCalibrator, Target, expected_calibration_error
from router_rl.policies.decision import DecisionConfig, decide

Q = np.array([[0.6, 0.8, 0.95], [0.2, 0.5, 0.9], [0.9, 0.95, 0.97]])
C = np.tile([1.0, 5.0, 100.0], (3, 1))
LOCAL = np.array([True, True, False])


def test_deterministic_default_is_one_hot_argmax_of_utility() -> None:
    d = decide(Q, C, None, DecisionConfig(lam=0.0), cost_scale=100.0)
    assert d.probs.argmax(axis=1).tolist() == [2, 2, 2]
    d = decide(Q, C, None, DecisionConfig(lam=0.5), cost_scale=100.0)
    # utility: row0 [.595,.775,.45] row1 [.195,.475,.4] row2 [.895,.925,.47]
    assert d.probs.argmax(axis=1).tolist() == [1, 1, 1]
    assert set(np.unique(d.probs)) == {0.0, 1.0}


def test_soft_distribution_sums_to_one_and_explores_allowed_only() -> None:
    sens = np.array([True, False, False])
    d = decide(Q, C, None, DecisionConfig(lam=0.5, temperature=0.1, epsilon=0.1), cost_scale=100.0,
               sensitive=sens, is_local=LOCAL)
    np.testing.assert_allclose(d.probs.sum(axis=1), 1.0)
    assert d.probs[0, 2] == 0.0  # privacy: cloud never gets mass
    assert (d.probs[1:] > 0).all()
    assert (d.probs[0, :2] > 0).all()


def test_privacy_without_local_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no candidate model is local"):
        decide(Q, C, None, DecisionConfig(), cost_scale=1.0, sensitive=np.array([True, False, False]),
               is_local=np.zeros(3, dtype=bool))


def test_quality_floor_and_escalation() -> None:
    d = decide(Q, C, None, DecisionConfig(lam=5.0, quality_floor=0.85), cost_scale=100.0, explain=True)
    # row0: only cloud clears .85; row1: only cloud; row2: all do -> cheapest utility wins
    assert d.probs.argmax(axis=1).tolist() == [2, 2, 0]
    assert "quality floor 0.85" in d.hits[0]
    d = decide(Q, C, None, DecisionConfig(lam=20.0, escalate_below=0.75), cost_scale=100.0, explain=True)
    # lam=20 picks the cheapest model; rows 0/1 escalate to the cheapest confident tier up
    assert d.probs.argmax(axis=1).tolist() == [1, 2, 0]
    assert d.escalated.tolist() == [True, True, False]
    np.testing.assert_allclose(d.probs.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "kwargs", [{"lam": -1.0}, {"epsilon": 1.0}, {"temperature": float("nan")}, {"quality_floor": 2.0}]
)
def test_config_validation_names_the_setting(kwargs) -> None:
    with pytest.raises(ConfigError, match=f"DecisionConfig.{next(iter(kwargs))}"):
        DecisionConfig(**kwargs)


def test_target_parsing() -> None:
    assert Target.parse("quality=0.95") == Target("quality", 0.95)
    assert str(Target.parse("budget=0.002")) == "budget=0.002"
    for bad in ("quality", "speed=1", "quality=1.5", "budget=-1", "local=abc"):
        with pytest.raises(ConfigError, match="target"):
            Target.parse(bad)


def test_probability_calibration_reduces_ece() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0, 1, 20000)
    y = (rng.random(true_p.size) < true_p).astype(float)
    raw = true_p**3  # badly calibrated
    assert expected_calibration_error(raw, y) > 0.1
    for method in ("isotonic", "platt"):
        cal = ProbabilityCalibrator.fit(method, raw[:10000], y[:10000])
        assert expected_calibration_error(cal(raw[10000:]), y[10000:]) < 0.03, method
        again = ProbabilityCalibrator(**cal.to_dict())
        np.testing.assert_allclose(again(raw[:50]), cal(raw[:50]))


def test_isotonic_lookup_table_path_equals_np_interp() -> None:
    rng = np.random.default_rng(3)
    raw = rng.beta(0.5, 2.0, 20000)
    cal = ProbabilityCalibrator.fit("isotonic", raw, (rng.random(raw.size) < raw**0.5).astype(float))
    x = np.asarray(cal.x)
    assert x.size > 50
    knots_and_gaps = np.concatenate([x, np.nextafter(x, 0), np.nextafter(x, 1), (x[1:] + x[:-1]) / 2])
    crowded = np.linspace(x[0], x[0] + 1e-6, 500)  # many values inside one lookup cell
    probe = np.concatenate([rng.random(6000), knots_and_gaps, crowded, [0.0, 1.0, x[0] / 2]])
    assert probe.size >= 4096  # the lookup-table path
    np.testing.assert_allclose(cal(probe), np.interp(probe, cal.x, cal.y), rtol=0, atol=1e-15)
    grid = probe[:4096].reshape(64, 64)
    np.testing.assert_allclose(cal(grid), np.interp(grid, cal.x, cal.y), rtol=0, atol=1e-15)
    with_nan = probe.copy()
    with_nan[7] = np.nan  # non-finite input: np.interp's own behaviour
    assert np.isnan(cal(with_nan)[7]) and np.isfinite(np.delete(cal(with_nan), 7)).all()
    assert np.array_equal(cal(probe[:100]), np.interp(probe[:100], cal.x, cal.y))  # small batches: np.interp
