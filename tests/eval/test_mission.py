"""The mission point: calibrated on validation to quality>=floor, measured on test, and the test frontier."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.eval.mission import mission_point
from router_rl.features.encoder import EncoderConfig, FeatureEncoder
from router_rl.policies import make_policy
from router_rl.traces import simulate_fleet


@pytest.fixture(scope="module")
def fleet():
    m = simulate_fleet(1500, seed=5).matrix()
    train, val, test = m.split("train"), m.split("val"), m.split("test")
    enc = FeatureEncoder(EncoderConfig(categorical_columns=("agent_type", "category", "complexity"))).fit(train.tasks)
    return enc, train, val, test


def test_mission_point_of_a_utility_router(fleet) -> None:
    enc, train, val, test = fleet
    pol = make_policy("cells", train.models).attach_encoder(enc)
    pol.fit(enc.transform(train.tasks), train, seed=0)
    before = pol.decision
    ref = train.best_single_model()
    pt = mission_point("cells", pol, enc.transform(val.tasks), val, enc.transform(test.tasks), test, reference=ref)
    assert pol.decision == before  # the policy given is not modified
    assert pt.nu is not None and pt.nu > 0 and pt.lam is not None
    # the deployed numbers are the calibrated copy's, on test
    cal = make_policy("cells", train.models).attach_encoder(enc)
    cal.fit(enc.transform(train.tasks), train, seed=0)
    cal.calibrate(enc.transform(val.tasks), val, "quality>=0.95")
    p = cal.action_distribution(enc.transform(test.tasks))
    j = test.model_index(ref)
    q = (p * test.quality).sum(axis=1).mean() / test.quality[:, j].mean()
    assert pt.deployed_quality_ratio == pytest.approx(q)
    assert pt.deployed_met == (q >= 0.95)
    assert pt.deployed_local_share == pytest.approx(p[:, test.is_local()].sum(axis=1).mean())
    # the frontier reaches the floor and sends most traffic local at it (the locality term at work)
    assert pt.frontier_local_share is not None and pt.frontier_local_share > 0.5


def test_mission_point_of_a_policy_without_the_utility_rule(fleet) -> None:
    enc, train, val, test = fleet
    pol = make_policy("cheapest", train.models).fit(enc.transform(train.tasks), train, seed=0)
    pt = mission_point("cheapest", pol, enc.transform(val.tasks), val, enc.transform(test.tasks), test,
                       reference=train.best_single_model())
    assert pt.lam is None and pt.nu is None and pt.deployed_local_share == 1.0
    assert not pt.deployed_met and pt.frontier_local_share is None
    assert np.isfinite(pt.deployed_cost_share)
