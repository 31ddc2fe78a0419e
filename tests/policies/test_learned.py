"""Learned policies (LightGBM, kNN, MLP, mf, bandits, cascade): fit, determinism, persistence, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router_rl.policies import PolicyLoadError, RoutingPolicy, make_policy
from router_rl.policies.utility import UtilityPolicy

MODELS = ("small", "big", "cloud")
FAST_LGBM = {"config": {"num_boost_round": 60, "early_stopping_rounds": 10}}
LEARNED = {
    "lgbm": FAST_LGBM,
    "knn": {"k": 15},
    "mlp": {"config": {"hidden": [16], "max_iter": 300}},
    "mf": {"config": {"dim": 4, "epochs": 150}},
    "linucb": {"dim": 4},
    "thompson": {"dim": 4, "n_samples": 64},
    "cascade": {"scorer": "knn", "threshold": 0.7},
}
ALL = {**LEARNED, "random": {}, "single": {}, "cheapest": {}, "rules": {"complexity_spec": {"rank": 0}}}


def _fit(name: str, toy_splits, seed: int = 0) -> RoutingPolicy:
    X, m = toy_splits["train"]
    return make_policy(name, MODELS, **ALL[name]).fit(X, m, seed=seed)


@pytest.mark.parametrize("name", sorted(ALL))
def test_distribution_is_valid_and_save_load_is_identical(name: str, toy_splits, tmp_path: Path) -> None:
    pol = _fit(name, toy_splits)
    X, m = toy_splits["test"]
    p = pol.action_distribution(X)
    assert p.shape == (m.n_tasks, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p >= 0).all()
    pol.save(tmp_path / name)
    meta = json.loads((tmp_path / name / "policy.json").read_text())
    assert meta["kind"] == name and meta["models"] == list(MODELS)
    assert meta["metadata"]["train"]["data_hash"] and meta["metadata"]["created"]
    loaded = RoutingPolicy.load(tmp_path / name)
    assert type(loaded) is type(pol)
    np.testing.assert_array_equal(loaded.action_distribution(X), p)
    np.testing.assert_array_equal(loaded.route_matrix(X, m).cost, pol.route_matrix(X, m).cost)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_training_is_deterministic_given_the_seed(name: str, toy_splits) -> None:
    X, _ = toy_splits["test"]
    a, b = _fit(name, toy_splits, seed=3), _fit(name, toy_splits, seed=3)
    np.testing.assert_array_equal(a.action_distribution(X), b.action_distribution(X))
    if isinstance(a, UtilityPolicy):
        np.testing.assert_array_equal(a.predict_quality(X), b.predict_quality(X))


def test_loading_for_other_models_or_encoder_fails_clearly(toy_splits, tmp_path: Path) -> None:
    pol = _fit("knn", toy_splits)
    pol.metadata["encoder_fingerprint"] = "aaaa"
    pol.save(tmp_path / "p")
    with pytest.raises(PolicyLoadError, match=r"trained for models \['small', 'big', 'cloud'\]"):
        RoutingPolicy.load(tmp_path / "p", models=["small", "cloud"])
    with pytest.raises(PolicyLoadError, match="trained with feature encoder aaaa"):
        RoutingPolicy.load(tmp_path / "p", encoder_fingerprint="bbbb")
    X, m = toy_splits["test"]
    with pytest.raises(PolicyLoadError, match="but the outcome matrix has"):
        pol.route_matrix(X, m.select_models(["cloud", "big", "small"]))
    with pytest.raises(ValueError, match="trained on 6"):
        pol.action_distribution(X[:, :4])
    (tmp_path / "p" / "weights.npz").unlink()
    with pytest.raises(PolicyLoadError, match="missing weights file"):
        RoutingPolicy.load(tmp_path / "p")
    with pytest.raises(PolicyLoadError, match=r"no policy\.json"):
        RoutingPolicy.load(tmp_path / "nothing")


def test_lgbm_learns_the_signal_and_is_calibrated(toy_splits) -> None:
    pol = _fit("lgbm", toy_splits)
    X, m = toy_splits["test"]
    q = pol.predict_quality(X)
    # feature 0 drives the local models: predicted success must rank with it
    assert np.corrcoef(q[:, 0], X[:, 0])[0, 1] > 0.8
    assert pol.metadata["metrics"]["oof_ece_raw"] < 0.1
    # calibrated probabilities match the observed success rate overall
    assert abs(q.mean(axis=0) - m.quality.mean(axis=0)).max() < 0.1


@pytest.mark.parametrize("name", ["lgbm", "knn", "mlp", "mf"])
@pytest.mark.parametrize("target", ["quality=0.95", "budget=0.003", "local=0.8"])
def test_lambda_calibration_hits_its_target_on_validation(name: str, target: str, toy_splits) -> None:
    pol = _fit(name, toy_splits)
    assert isinstance(pol, UtilityPolicy)
    Xv, v = toy_splits["val"]
    res = pol.calibrate(Xv, v, target)
    assert res.met, res.to_dict()
    out = pol.route_matrix(Xv, v)  # the policy now runs at the calibrated λ
    kind, val = target.split("=")
    if kind == "quality":
        assert out.quality.mean() >= float(val) * v.quality[:, pol.reference_index].mean() - 1e-9
        assert out.cost.mean() < v.cost[:, pol.reference_index].mean()  # and it saves money
    elif kind == "budget":
        assert out.cost.mean() <= float(val) + 1e-12
    else:
        assert v.is_local()[out.actions].mean() >= float(val) - 1e-9
    assert pol.metadata["calibration"]["lam"] == pol.decision.lam


def test_privacy_keeps_sensitive_tasks_local(toy_splits) -> None:
    pol = _fit("knn", toy_splits)
    assert isinstance(pol, UtilityPolicy)
    pol.privacy_col = 5
    X, _ = toy_splits["test"]
    X = X.copy()
    X[:, 5] = 0.0
    X[::2, 5] = 1.0
    a = pol.action_distribution(X).argmax(axis=1)
    assert (a[::2] != 2).all()
    assert (a[1::2] == 2).any()


def test_cascade_pays_for_every_call(toy_splits) -> None:
    pol = _fit("cascade", toy_splits)
    X, m = toy_splits["test"]
    out = pol.route_matrix(X, m)
    assert pol.chain_models == ["small", "big", "cloud"]
    rows = np.arange(m.n_tasks)
    # a task that ended at model k paid for models 0..k of the chain
    for i in rows:
        k = int(out.actions[i])
        assert out.n_calls[i] == k + 1
        assert out.cost[i] == pytest.approx(m.cost[i, : k + 1].sum())
        assert out.latency[i] == pytest.approx(m.latency[i, : k + 1].sum())
    res = pol.calibrate(*toy_splits["val"], "quality=0.9")
    assert res.met and pol.threshold == res.lam


def test_bandit_online_update_moves_towards_rewarding_arm(toy_splits) -> None:
    X, _ = toy_splits["train"]
    pol = make_policy("linucb", MODELS, dim=4, alpha=0.0)
    pol.start_online(X, cost_scale=0.01, seed=0)
    for _ in range(30):
        pol.update(X[0], 1, 1.0)
        pol.update(X[0], 0, 0.0)
        pol.update(X[0], 2, 0.2)
    assert pol.action_distribution(X[:1]).argmax() == 1
    with pytest.raises(ValueError, match="out of range"):
        pol.update(X[0], 7, 1.0)


def test_thompson_propensities_match_sampling_frequencies(toy_splits) -> None:
    pol = _fit("thompson", toy_splits)
    X, _ = toy_splits["test"]
    p = pol.action_distribution(X[:1])
    assert (p > 0).sum() >= 1
    a, prop = pol.act(np.repeat(X[:1], 5000, axis=0), np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(a, minlength=3) / a.size, p[0], atol=0.03)
    np.testing.assert_allclose(prop, p[0][a])


def test_cascade_default_chain_is_the_cost_quality_pareto_tiers() -> None:
    from router_rl.policies.cascade import pareto_chain

    cost = np.array([0.5, 0.1, 0.3, 1.0, 0.2])
    quality = np.array([0.6, 0.4, 0.7, 0.9, 0.3])  # model 4 is dominated by model 1; model 0 by model 2
    assert pareto_chain(cost, quality) == [1, 2, 3]
