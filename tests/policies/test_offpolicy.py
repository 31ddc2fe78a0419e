"""policies/offpolicy.py: pseudo-outcomes from partial feedback, and learners fitted from a log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _offpolicy_helpers import fit_logging_policy

from router_rl.core.errors import ConfigError
from router_rl.policies.exploration import ExplorationConfig, explore
from router_rl.policies.offpolicy import (
    OffPolicyConfig,
    OffPolicyError,
    clipped_weights,
    fit_from_log,
    pseudo_matrix,
    pseudo_outcomes,
)


def _biased_log(n: int = 6000, seed: int = 0, epsilon: float = 0.3) -> dict[str, Any]:
    """3 models whose success depends on x0; the logging policy picks model 0 when x0 > 0.5 (with exploration)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3)).astype(np.float32)
    p_true = np.stack([0.1 + 0.8 * X[:, 0], 0.9 - 0.8 * X[:, 0], np.full(n, 0.5)], axis=1)
    greedy = np.where(X[:, 0] > 0.5, 0, 1)
    base = np.eye(3)[greedy]
    probs = explore(base, ExplorationConfig(epsilon=epsilon))
    a = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    rows = np.arange(n)
    y_all = (rng.random((n, 3)) < p_true).astype(float)
    cost_all = np.tile([0.001, 0.002, 0.01], (n, 1)) * (1 + X[:, 1:2])
    return {
        "X": X, "a": a, "p": probs[rows, a], "q": y_all[rows, a], "cost": cost_all[rows, a], "p_true": p_true,
        "cost_all": cost_all,
    }


def test_clipped_weights_and_bad_propensities() -> None:
    np.testing.assert_allclose(clipped_weights(np.array([0.5, 0.01, 1.0]), 10.0), [2.0, 10.0, 1.0])
    with pytest.raises(OffPolicyError, match=r"propensity: expected values in \(0, 1\], got 0.0 at rows \[1\]"):
        clipped_weights(np.array([0.5, 0.0, 1.0]), 10.0)
    with pytest.raises(OffPolicyError, match=r"rows \[0\]"):
        clipped_weights(np.array([1.5]), 10.0)


def test_corrected_pseudo_outcomes_recover_the_true_means_where_the_logged_means_do_not() -> None:
    d = _biased_log(n=20000)
    truth = d["p_true"].mean(axis=0)
    naive = np.array([d["q"][d["a"] == j].mean() for j in range(3)])
    # the log is biased: model 0 is mostly logged where it is good, model 1 where it is good
    assert naive[0] - truth[0] > 0.1 and naive[1] - truth[1] > 0.1
    outcomes = {"quality": d["q"], "cost": d["cost"]}
    # dr with the default (pooled) reward model; iw with per-model reward models: here the two
    # models depend on x0 in opposite directions, which the pooled booster only partly separates
    # (its iw cells are then off by ~0.03: dr corrects exactly that)
    for corr, rm, tol in (("dr", "pooled", 0.025), ("iw", "per_model", 0.025), ("ips", "pooled", 0.035)):
        cfg = OffPolicyConfig(correction=corr, clip=100, reward_model=rm)
        po = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg, seed=1)
        np.testing.assert_allclose(po.quality.mean(axis=0), truth, atol=tol, err_msg=corr)
        np.testing.assert_allclose(po.cost.mean(axis=0), d["cost_all"].mean(axis=0), rtol=0.05, err_msg=corr)
        assert np.isnan(po.latency).all()  # no latency given: nothing estimated, nothing invented
    # the reward model tracks the per-task truth, not just the mean
    cfg = OffPolicyConfig(correction="iw", clip=100, reward_model="per_model")
    po = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg, seed=1)
    mae = np.abs(po.reward["quality"] - d["p_true"]).mean(axis=0)
    mae_of_the_mean = np.abs(d["p_true"] - truth).mean(axis=0)
    assert (mae[:2] < 0.4 * mae_of_the_mean[:2]).all() and mae.max() < 0.08


def test_cell_formulas_of_each_correction() -> None:
    d = _biased_log(n=1500)
    rows = np.arange(d["a"].size)
    outcomes = {"quality": d["q"]}
    cfg = OffPolicyConfig(correction="dr", clip=5)
    dr = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg, seed=2)
    r_hat, w = dr.reward["quality"], dr.weights
    np.testing.assert_allclose(w, np.minimum(1 / d["p"], 5))
    want = r_hat.copy()
    want[rows, d["a"]] += w * (d["q"] - r_hat[rows, d["a"]])
    np.testing.assert_allclose(dr.quality, want)
    assert dr.info["quality_cells_out_of_range"] == int(((want < 0) | (want > 1)).sum()) > 0
    assert dr.info["weights"]["n_clipped"] == int((1 / d["p"] > 5).sum()) > 0
    iw = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg.replace(correction="iw"), seed=2)
    np.testing.assert_array_equal(iw.quality[rows, d["a"]], d["q"])
    np.testing.assert_allclose(iw.reward["quality"], r_hat)  # same folds, same weights as dr
    none = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg.replace(correction="none"), seed=2)
    assert not np.allclose(none.reward["quality"], r_hat)  # unweighted reward model
    ips = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg.replace(correction="ips"), seed=2)
    want = np.zeros_like(want)
    want[rows, d["a"]] = w * d["q"]
    np.testing.assert_allclose(ips.quality, want)
    assert ips.reward == {}


def test_a_rows_own_label_never_enters_its_reward_estimate() -> None:
    d = _biased_log(n=1200)
    outcomes = {"quality": d["q"]}
    cfg = OffPolicyConfig(correction="iw")
    before = pseudo_outcomes(d["X"], d["a"], d["p"], outcomes, 3, cfg, seed=3).reward["quality"]
    # the fold assignment is the first draw pseudo_outcomes makes from its seed
    folds = np.empty(1200, dtype=np.int64)
    folds[np.random.default_rng(3).permutation(1200)] = np.arange(1200) % cfg.folds
    # flip labels of fold-0 rows only: fold-0 estimates are bit-identical, fold-1 estimates move
    q3 = d["q"].copy()
    sel = np.flatnonzero(folds == 0)[:60]
    q3[sel] = 1.0 - q3[sel]
    third = pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": q3}, 3, cfg, seed=3).reward["quality"]
    np.testing.assert_array_equal(third[folds == 0], before[folds == 0])
    assert np.abs(third[folds == 1] - before[folds == 1]).max() > 1e-3


def test_rare_models_are_mean_imputed_and_counted() -> None:
    d = _biased_log(n=600, epsilon=0.03)
    cfg = OffPolicyConfig(correction="iw", min_model_rows=30, reward_model="per_model")
    po = pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": d["q"]}, 3, cfg, seed=0)
    assert (np.bincount(d["a"], minlength=3)[2]) < 30
    assert po.info["reward_model"]["quality"]["mean_imputed"] == {"2": 2}
    chosen2 = d["a"] == 2
    # per model: model 2's cells all carry one (weighted) mean per fold
    assert np.unique(po.reward["quality"][:, 2]).size <= 2
    assert po.info["rows_per_model"][2] == int(chosen2.sum())
    # pooled: model 2 starts from the pooled rate (counted) and still follows the task difficulty
    pooled = pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": d["q"]}, 3, cfg.replace(reward_model="pooled"), seed=0)
    info = pooled.info["reward_model"]["quality"]
    assert info["model"] == "pooled" and info["mean_imputed"] == {"2": 2}
    assert np.unique(pooled.reward["quality"][:, 2]).size > 10


def test_bad_inputs_name_the_field() -> None:
    d = _biased_log(n=100)
    with pytest.raises(OffPolicyError, match=r"quality: expected values in \[0, 1\]"):
        pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": d["q"] * 2 - 0.5}, 3)
    with pytest.raises(OffPolicyError, match="quality: expected finite values"):
        pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": np.full(100, np.nan)}, 3)
    with pytest.raises(OffPolicyError, match=r"actions: expected indices in \[0, 2\)"):
        pseudo_outcomes(d["X"], d["a"], d["p"], {"quality": d["q"]}, 2)
    with pytest.raises(OffPolicyError, match="unknown quantities"):
        pseudo_outcomes(d["X"], d["a"], d["p"], {"tokens": d["q"]}, 3)
    with pytest.raises(ConfigError, match="clip"):
        OffPolicyConfig(clip=0.5)


# --- learners fitted from a simulated log ---------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A simulated fleet, a LightGBM logging policy and a 900-row log (80% labelled, 5% fallbacks)."""
    from router_rl.logs.simulate import LogSimulationConfig, simulate_log

    fleet, _, enc, logging_policy = fit_logging_policy(500, seed=4)
    log = simulate_log(fleet, logging_policy, n=900, exploration=ExplorationConfig(epsilon=0.2), split="train",
                       seed=5, config=LogSimulationConfig(feedback_rate=0.8, fallback_rate=0.05))
    return {"fleet": fleet, "policy": logging_policy, "encoder": enc, "log": log, "data": log.logged()}


def test_pseudo_matrix_counts_unlabelled_and_fallback_rows(sim: dict[str, Any]) -> None:
    data = sim["data"]
    pm = pseudo_matrix(data, OffPolicyConfig(), seed=0, catalog=sim["log"].catalog)
    labeled = np.isfinite(data.quality)
    assert 0 < (~labeled).sum() < data.n  # the fixture has both kinds
    assert pm.info["n_rows"] == data.n and pm.info["n_labeled"] == int(labeled.sum())
    assert pm.info["n_unlabeled"] == int((~labeled).sum())
    assert pm.info["n_fallback"] == int(data.fallback[labeled].sum()) > 0
    assert pm.matrix.n_tasks == int(labeled.sum()) and pm.X.shape == (int(labeled.sum()), data.X.shape[1])
    assert pm.matrix.task_ids.tolist() == [str(r) for r in data.request_ids[labeled]]
    rows = np.arange(pm.matrix.n_tasks)
    # the chosen cell holds the logged outcome (fallbacks credited to the chosen model)
    np.testing.assert_array_equal(pm.matrix.quality[rows, data.actions[labeled]], data.quality[labeled])
    np.testing.assert_array_equal(pm.matrix.cost[rows, data.actions[labeled]], data.cost_usd[labeled])
    assert np.isfinite(pm.matrix.quality).all()


def test_fit_from_log_records_how_and_round_trips(sim: dict[str, Any], tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy, make_policy

    data, enc = sim["data"], sim["encoder"]
    pol = make_policy("lgbm", data.models, decision={"lam": 0.5})
    fit_from_log(pol, data, OffPolicyConfig(clip=20), seed=0, encoder=enc, catalog=sim["log"].catalog,
                 logging_policy_versions={sim["policy"].version: data.n})
    info = pol.metadata["offpolicy"]
    assert info["correction"] == "iw" and info["clip"] == 20.0 and info["folds"] == 2
    assert info["n_rows"] == data.n and info["n_labeled"] == data.n_labeled
    assert info["logging_policy_versions"] == {sim["policy"].version: data.n}
    assert info["encoder_fingerprint"] == enc.fingerprint == pol.metadata["encoder_fingerprint"]
    assert info["learner"] == "lgbm"
    out = pol.save(tmp_path / "art")
    back = RoutingPolicy.load(out, encoder_fingerprint=enc.fingerprint)
    assert back.metadata["offpolicy"] == info
    np.testing.assert_array_equal(back.action_distribution(data.X), pol.action_distribution(data.X))
    # it routes raw requests with the logging policy's encoder
    X = back.encoder.transform_records([{"prompt": "write a unit test for parse_args", "agent_type": "coder"}])
    assert back.action_distribution(X).shape == (1, len(data.models))


def test_fit_from_log_refuses_ips_and_a_foreign_encoder(sim: dict[str, Any]) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    data = sim["data"]
    pol = make_policy("lgbm", data.models)
    with pytest.raises(ConfigError, match="correction: 'ips' cannot train a learner"):
        fit_from_log(pol, data, OffPolicyConfig(correction="ips"))
    other = simulate_fleet(120, seed=9).matrix()
    enc2 = FeatureEncoder(EncoderConfig(seed=1).restricted_to(other.tasks.columns)).fit(other.tasks)
    assert enc2.fingerprint != sim["encoder"].fingerprint
    with pytest.raises(OffPolicyError, match=f"the encoder has fingerprint {enc2.fingerprint}, but the log's features"):
        fit_from_log(pol, data, encoder=enc2)
