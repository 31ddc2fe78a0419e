"""Estimators: invalid input, bounds, accuracy and interval coverage against a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.ope import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    LoggedFeedback,
    OPEInputError,
    Replay,
    SwitchDR,
    default_estimators,
    estimate_all,
    make_estimator,
    one_hot,
    weight_diagnostics,
)
from router_rl.ope.bootstrap import bootstrap_column_sums
from router_rl.ope.synthetic import make_bandit, simulate_logs

ALL = [DirectMethod(), IPS(), SNIPS(), DoublyRobust(), SwitchDR(tau=2.0)]


def _valid(n: int = 5, k: int = 3) -> dict[str, np.ndarray]:
    return {
        "rewards": np.linspace(0, 1, n),
        "actions": np.arange(n) % k,
        "propensities": np.full(n, 1.0 / k),
        "target": np.full((n, k), 1.0 / k),
        "reward_hat": np.full((n, k), 0.5),
    }


@pytest.mark.parametrize("est", ALL, ids=lambda e: e.label)
@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("propensities", [0.3, 0.0, 0.3, 0.3, 0.3], r"propensities\[1\]: expected a probability in \(0, 1\], got 0.0"),
        ("propensities", [0.3, 0.3, -0.2, 0.3, -1.0], r"propensities\[2\]: .*got -0.2 \(2 entries affected\)"),
        ("propensities", [0.3, 0.3, 0.3, np.nan, 0.3], r"propensities\[3\]: .*NaN \(missing propensity\)"),
        ("propensities", None, r"propensities: is required"),
        ("propensities", [0.3, 0.3], r"propensities: expected length 5"),
        ("actions", [0, 1, 2, 3, 0], r"actions\[3\]: expected an action in \[0, 3\), got 3"),
        ("actions", [0, -1, 2, 0, 0], r"actions\[1\]: expected an action in \[0, 3\), got -1"),
        ("actions", [0, 1.5, 2, 0, 0], r"actions\[1\]: expected an integer action index"),
        ("rewards", [0, 1, np.inf, 0, 0], r"rewards\[2\]: expected a finite number"),
        ("rewards", [0, 1, 1], r"rewards: expected length 5"),
        ("target", np.full((5, 3), 0.5), r"target\[0\]: row must sum to 1, sums to 1.5 \(5 entries affected\)"),
        ("target", np.full((5, 2), 0.5), None),
        ("target", np.full(5, 0.5), r"target: expected an \(n, n_actions\) array"),
        ("target", [[1, 0, 0]] * 4 + [[1.2, -0.2, 0]], r"target\[4, 1\]: expected a probability >= 0, got -0.2"),
    ],
)
def test_invalid_inputs_name_argument_and_index(est, field, value, match) -> None:
    kw = _valid()
    kw[field] = None if value is None else np.asarray(value)
    with pytest.raises(OPEInputError, match=match):
        est.estimate(**kw)
    with pytest.raises(OPEInputError, match=match):
        est.estimate_interval(**kw, n_bootstrap=20, rng=0)


@pytest.mark.parametrize("est", [DirectMethod(), DoublyRobust(), SwitchDR()], ids=lambda e: e.label)
def test_reward_model_required(est) -> None:
    kw = _valid()
    kw["reward_hat"] = None
    with pytest.raises(OPEInputError, match=f"reward_hat: estimator '{est.name}' needs reward-model"):
        est.estimate(**kw)
    kw["reward_hat"] = np.ones((5, 2))
    with pytest.raises(OPEInputError, match=r"reward_hat: expected shape \(5, 3\), got \(5, 2\)"):
        est.estimate(**kw)


def test_bad_hyperparameters() -> None:
    with pytest.raises(OPEInputError, match="tau"):
        SwitchDR(tau=-1.0)
    with pytest.raises(OPEInputError, match="unknown estimator 'foo'"):
        make_estimator("foo")
    assert make_estimator("switch_dr", tau=3.0).label == "switch_dr(tau=3)"
    with pytest.raises(OPEInputError, match="alpha"):
        IPS().estimate_interval(**_valid(), alpha=1.5)
    with pytest.raises(OPEInputError, match="n_bootstrap"):
        IPS().estimate_interval(**_valid(), n_bootstrap=3)


def test_hand_computed_values() -> None:
    # 2 rows, 2 actions; logged a=(0,1) with p=(0.5, 0.25); target picks action 0 always.
    kw = {
        "rewards": np.array([1.0, 0.0]),
        "actions": np.array([0, 1]),
        "propensities": np.array([0.5, 0.25]),
        "target": one_hot([0, 0], 2),
        "reward_hat": np.array([[0.8, 0.1], [0.4, 0.2]]),
    }
    assert IPS().estimate(**kw) == pytest.approx((2.0 * 1.0 + 0.0) / 2)
    assert SNIPS().estimate(**kw) == pytest.approx(2.0 / 2.0)
    assert DirectMethod().estimate(**kw) == pytest.approx((0.8 + 0.4) / 2)
    # DR: row0 0.8 + 2*(1-0.8) = 1.2 ; row1 0.4 + 0*(...) = 0.4
    assert DoublyRobust().estimate(**kw) == pytest.approx(0.8)
    # switch-DR with tau=1: row0 weight 2 > 1 -> DM only
    assert SwitchDR(tau=1.0).estimate(**kw) == pytest.approx(0.6)
    assert SwitchDR(tau=float("inf")).estimate(**kw) == pytest.approx(DoublyRobust().estimate(**kw))
    assert SwitchDR(tau=0.0).estimate(**kw) == pytest.approx(DirectMethod().estimate(**kw))
    d = IPS().diagnostics(actions=kw["actions"], propensities=kw["propensities"], target=kw["target"])
    assert d.max_weight == 2.0 and d.ess == pytest.approx(1.0) and d.mean_weight == 1.0


def test_weight_diagnostics_kish() -> None:
    d = weight_diagnostics(np.ones(10))
    assert d.ess == 10 and d.ess_ratio == 1
    d = weight_diagnostics(np.array([4.0, 0, 0, 0]))
    assert d.ess == pytest.approx(1.0) and d.max_weight == 4.0
    with pytest.raises(OPEInputError, match=r"weights\[1\]"):
        weight_diagnostics(np.array([1.0, -1.0]))


def test_ips_with_uniform_logging_equals_replay_in_expectation() -> None:
    env = make_bandit(400, 4, 3, logging_temperature=1e6)  # ~uniform logging
    assert np.allclose(env.logging, 0.25, atol=1e-5)
    truth = Replay().estimate(target=env.target, reward_matrix=env.expected_reward)
    assert truth == pytest.approx(env.true_value)
    vals = []
    for s in range(200):
        log = env.sample_logs(s)
        vals.append(
            IPS().estimate(rewards=log.rewards, actions=log.actions, propensities=log.propensities, target=log.target)
        )
    se = np.std(vals) / np.sqrt(len(vals))
    assert abs(np.mean(vals) - truth) < 3 * se
    assert np.std(vals) > 0  # the estimator does vary across logs


def test_snips_bounded_by_reward_range() -> None:
    rng = np.random.default_rng(0)
    for s in range(20):
        log = simulate_logs(50, 3, s, logging_temperature=0.05)  # skewed weights
        r = rng.uniform(-2, 3, size=50)
        v = SNIPS().estimate(rewards=r, actions=log.actions, propensities=log.propensities, target=log.target)
        assert r.min() - 1e-12 <= v <= r.max() + 1e-12


def test_replay_interval_and_validation() -> None:
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    tgt = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0], [0.2, 0.8]])
    est = Replay().estimate_interval(target=tgt, reward_matrix=q, n_bootstrap=200, rng=1)
    assert est.value == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert est.lower <= est.value <= est.upper
    assert est == Replay().estimate_interval(target=tgt, reward_matrix=q, n_bootstrap=200, rng=1)
    with pytest.raises(OPEInputError, match=r"reward_matrix: expected shape \(4, 2\)"):
        Replay().estimate(target=tgt, reward_matrix=q[:3])


def test_intervals_are_seeded_and_reproducible() -> None:
    log = simulate_logs(500, 3, 0)
    kw = {
        "rewards": log.rewards,
        "actions": log.actions,
        "propensities": log.propensities,
        "target": log.target,
        "reward_hat": log.reward_hat,
    }
    a = DoublyRobust().estimate_interval(**kw, n_bootstrap=100, rng=7)
    b = DoublyRobust().estimate_interval(**kw, n_bootstrap=100, rng=7)
    c = DoublyRobust().estimate_interval(**kw, n_bootstrap=100, rng=8)
    assert a == b and a.lower != c.lower
    assert a.lower < a.value < a.upper
    assert a.to_dict()["diagnostics"]["ess"] > 0


def test_bootstrap_sums_match_explicit_resampling() -> None:
    cols = np.arange(12, dtype=float).reshape(6, 2)
    sums = bootstrap_column_sums(cols, 50, 3)
    gen = np.random.default_rng(3)
    for b in range(50):
        idx = gen.integers(0, 6, size=6, dtype=np.int32)
        np.testing.assert_allclose(sums[b], cols[idx].sum(axis=0))


def test_estimators_accurate_and_intervals_cover_truth() -> None:
    """Every estimator within 10% of the truth; 95% interval covers it in >= 90 of 100 repeats."""
    env = make_bandit(2000, 4, 0)
    ests = default_estimators(tau=2.0)
    cover = dict.fromkeys([e.label for e in ests], 0)
    width = dict.fromkeys([e.label for e in ests], 0.0)
    for s in range(100):
        log = env.sample_logs(s)
        data = LoggedFeedback.from_arrays(
            rewards=log.rewards,
            actions=log.actions,
            propensities=log.propensities,
            target=log.target,
            reward_hat=log.reward_hat,
        )
        for label, est in estimate_all(ests, data, n_bootstrap=200, alpha=0.05, rng=1000 + s).items():
            assert abs(est.value - env.true_value) <= 0.10 * env.true_value, (label, s)
            cover[label] += est.lower <= env.true_value <= est.upper
            width[label] += (est.upper - est.lower) / 100
    assert all(v >= 90 for v in cover.values()), cover
    # informative intervals, not trivially wide ones (IPS-family ~ +-4% of the value)
    assert all(w < 0.15 * env.true_value for w in width.values()), width
