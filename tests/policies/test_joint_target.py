"""Joint operating targets: the locality term ν, parsing, and (λ, ν) calibration on validation."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies.calibration import Target, parse_target
from router_rl.policies.decision import DecisionConfig, decide
from router_rl.policies.joint_target import JointTarget, search_joint

Q = np.array([[0.6, 0.8, 0.95], [0.2, 0.5, 0.9], [0.9, 0.95, 0.97]])
C = np.tile([1.0, 5.0, 100.0], (3, 1))
LOCAL = np.array([True, True, False])


def test_locality_term_moves_choices_to_local_models_by_nu() -> None:
    base = decide(Q, C, None, DecisionConfig(), cost_scale=100.0, is_local=LOCAL)
    assert base.probs.argmax(axis=1).tolist() == [2, 2, 2]
    # ν = 0.2: row 0 (0.8 + 0.2 > 0.95) and row 2 (0.95 + 0.2 > 0.97) go local; row 1 (0.5 + 0.2 < 0.9) stays
    d = decide(Q, C, None, DecisionConfig(nu=0.2), cost_scale=100.0, is_local=LOCAL)
    assert d.probs.argmax(axis=1).tolist() == [1, 2, 1]
    np.testing.assert_allclose(d.utility, Q + 0.2 * LOCAL)
    small = decide(Q, C, None, DecisionConfig(nu=0.1), cost_scale=100.0, is_local=LOCAL)
    assert small.probs.argmax(axis=1).tolist() == [2, 2, 1]
    # one-row fast path = general path
    for i in range(3):
        one = decide(Q[i:i + 1], C[i:i + 1], None, DecisionConfig(nu=0.2), cost_scale=100.0, is_local=LOCAL)
        np.testing.assert_array_equal(one.probs[0], d.probs[i])


def test_locality_term_needs_locations() -> None:
    with pytest.raises(ValueError, match="locality term"):
        decide(Q, C, None, DecisionConfig(nu=0.1), cost_scale=100.0)
    with pytest.raises(ValueError, match="locality term"):
        decide(Q[:1], C[:1], None, DecisionConfig(nu=0.1), cost_scale=100.0)
    with pytest.raises(ConfigError):
        DecisionConfig(nu=-0.1)


def test_parse_target_reads_both_syntaxes() -> None:
    assert parse_target("quality=0.95") == Target("quality", 0.95)
    jt = parse_target("quality>=0.95, local>=0.8,budget<=0.002")
    assert jt == JointTarget(quality=0.95, local=0.8, budget=0.002)
    assert str(jt) == "quality>=0.95,local>=0.8,budget<=0.002" and jt.maximises == "local"
    assert JointTarget.parse("local>=0.8").maximises == "quality"


@pytest.mark.parametrize(
    ("text", "match"),
    [("quality>=1.5", "fraction"), ("budget>=0.1", "budget takes <="), ("quality>=0.9,quality>=0.8", "twice"),
     ("speed>=3", "expected quality>=F"), ("local>=x", "not a number"), ("budget<=0", "USD per request")],
)
def test_joint_target_errors_name_the_part(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        JointTarget.parse(text)


def _toy(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted = true quality; local models good on easy rows, a cloud model good everywhere.

    The models cost about the same, so λ (cost) cannot express "prefer local": only ν can.
    """
    rng = np.random.default_rng(seed)
    easy = rng.random(n)
    q = np.stack([np.clip(1.2 * easy, 0, 1), np.clip(0.5 + 0.5 * easy, 0, 1), np.full(n, 0.95)], axis=1)
    c = np.tile([0.018, 0.019, 0.02], (n, 1))
    return q, q.copy(), c, np.array([True, True, False])


def _probs(qhat: np.ndarray, c: np.ndarray, loc: np.ndarray):
    return lambda lam, nu: decide(qhat, c, None, DecisionConfig(lam=lam, nu=nu), cost_scale=0.02, is_local=loc).probs


def test_search_joint_maximises_local_share_under_the_quality_floor() -> None:
    qhat, q, c, loc = _toy()
    res = search_joint(_probs(qhat, c, loc), q, c, JointTarget(quality=0.95), reference=2, reference_model="cloud",
                       is_local=loc)
    assert res.met and res.unmet == [] and "quality" in res.binding
    assert res.point.quality / res.reference_quality >= 0.95 - 1e-12
    # no grid point meeting the floor is more local (beyond the documented tolerance)
    best_local = max(p.local_share for p in res.curve if p.quality / res.reference_quality >= 0.95 - 1e-12)
    assert res.point.local_share >= best_local - 0.005
    # far more local than the cheapest-λ point meeting quality=0.95 alone (ν = 0)
    lam_only = max(p.local_share for p in res.curve if p.nu == 0 and p.quality / res.reference_quality >= 0.95)
    assert res.point.local_share > lam_only + 0.05
    assert res.nu > 0


def test_search_joint_reports_the_closest_point_and_the_unmet_part() -> None:
    qhat, q, c, loc = _toy()
    res = search_joint(_probs(qhat, c, loc), q, c, JointTarget(quality=0.99, local=0.95), reference=2,
                       reference_model="cloud", is_local=loc)
    assert not res.met and res.unmet and set(res.unmet) <= {"quality", "local"}
    assert res.binding == res.unmet


def test_search_joint_budget_binds() -> None:
    qhat, q, c, loc = _toy()
    res = search_joint(_probs(qhat, c, loc), q, c, JointTarget(local=0.3, budget=0.0195), reference=2,
                       reference_model="cloud", is_local=loc)
    assert res.met and res.point.cost <= 0.0195 + 1e-12 and res.point.local_share >= 0.3


def test_policy_calibrate_joint_target_sets_lam_and_nu(toy_splits: dict, tmp_path) -> None:
    from router_rl.policies import RoutingPolicy, make_policy

    (X, m), (Xv, mv) = toy_splits["train"], toy_splits["val"]
    pol = make_policy("knn", m.models, k=15).fit(X, m, seed=0)
    res = pol.calibrate(Xv, mv, "quality>=0.9")
    assert res.met and pol.decision.nu == res.nu and pol.decision.lam == res.lam
    assert pol.metadata["calibration"]["nu"] == res.nu
    pol.save(tmp_path / "p")
    back = RoutingPolicy.load(tmp_path / "p")
    assert back.decision.nu == res.nu  # saved with the artifact: offline, Ray Serve and the router agree
    np.testing.assert_array_equal(back.action_distribution(Xv), pol.action_distribution(Xv))
