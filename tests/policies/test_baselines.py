"""Baselines on small known data."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies import make_policy
from router_rl.policies.base import PolicyCapabilityError
from router_rl.policies.baselines import OraclePolicy, RuleRouter

MODELS = ("small", "big", "cloud")


def test_oracle_is_optimal_per_task(toy) -> None:
    X, m = toy
    out = make_policy("oracle", MODELS).route_matrix(X, m)
    np.testing.assert_array_equal(out.quality, m.quality.max(axis=1))
    for name in ("random", "cheapest", "knn"):
        p = make_policy(name, MODELS).fit(X, m, seed=0)
        assert (p.route_matrix(X, m).quality <= out.quality).all()
    # among best-quality models the oracle takes the cheapest
    best = m.quality >= m.quality.max(axis=1, keepdims=True)
    assert np.allclose(out.cost, np.where(best, m.cost, np.inf).min(axis=1))


def test_oracle_has_no_feature_only_distribution(toy) -> None:
    X, m = toy
    with pytest.raises(PolicyCapabilityError, match="needs the outcomes"):
        OraclePolicy(MODELS).action_distribution(X)
    assert OraclePolicy(MODELS).oracle_distribution(m).sum(axis=1).tolist() == [1.0] * m.n_tasks


@pytest.mark.parametrize("model", MODELS)
def test_single_model_matches_its_model(toy, model: str) -> None:
    X, m = toy
    out = make_policy("single", MODELS, model=model).route_matrix(X, m)
    j = MODELS.index(model)
    np.testing.assert_array_equal(out.quality, m.quality[:, j])
    np.testing.assert_array_equal(out.cost, m.cost[:, j])


def test_single_defaults_to_best_single_model_and_rejects_unknown(toy) -> None:
    X, m = toy
    assert make_policy("single", MODELS).fit(X, m).model == m.best_single_model() == "cloud"
    with pytest.raises(ConfigError, match="not a candidate"):
        make_policy("single", MODELS, model="gpt-9")


def test_cheapest_picks_lowest_mean_cost(toy) -> None:
    X, m = toy
    a, _ = make_policy("cheapest", MODELS).fit(X, m).act(X)
    assert set(a.tolist()) == {0}
    cat_only = make_policy("cheapest", MODELS, catalog=m.catalog)
    assert cat_only.act(X[:3])[0].tolist() == [0, 0, 0]  # local models cost nothing in this catalog


def test_random_propensities_match_empirical_frequencies(toy) -> None:
    X, _ = toy
    p = make_policy("random", MODELS, weights=[0.2, 0.3, 0.5])
    big = np.repeat(X[:1], 20000, axis=0)
    a, prop = p.act(big, np.random.default_rng(1))
    freq = np.bincount(a, minlength=3) / a.size
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.015)
    np.testing.assert_allclose(prop, np.array([0.2, 0.3, 0.5])[a])
    # reproducible without an explicit generator (own seed)
    assert (p.act(X)[0] == p.act(X)[0]).all()


def test_rule_router_tiers_and_privacy(toy) -> None:
    X, m = toy
    rules = RuleRouter(MODELS, complexity_spec={"rank": 0}, privacy_col=1).fit(X, m)
    assert rules.tiers == {"small": "small", "large": "big", "cloud": "cloud"}
    levels = np.array([0, 1, 2, 3, 3])
    sens = np.array([False, False, False, False, True])
    d = rules.distribution_for(levels, sens)
    assert d.argmax(axis=1).tolist() == [0, 0, 1, 2, 1]
    Xr = np.zeros((4, X.shape[1]), dtype=np.float32)
    Xr[:, 0] = [0, 2, 3, 3]
    Xr[3, 1] = 1.0  # privacy flag
    assert rules.action_distribution(Xr).argmax(axis=1).tolist() == [0, 1, 2, 1]


def test_rule_router_reads_encoder_columns() -> None:
    class Enc:
        feature_names = ("word_hash[0]", "cx:score", "cx:simple", "cx:moderate", "cx:complex", "cx:very_complex")
        fingerprint = "abc"

    rules = RuleRouter(MODELS, small_model="small", large_model="big", cloud_model="cloud").attach_encoder(Enc())
    X = np.zeros((2, 6), dtype=np.float32)
    X[0, 2] = 1.0
    X[1, 5] = 1.0
    assert rules.action_distribution(X).argmax(axis=1).tolist() == [0, 2]
    with pytest.raises(RuntimeError, match="no complexity feature"):
        RuleRouter(MODELS, small_model="small", large_model="big", cloud_model="cloud").action_distribution(X)
