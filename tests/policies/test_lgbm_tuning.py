"""LightGBM router tuning (issue #4): numpy tree evaluator, linear head, pooled/margined λ calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies import RoutingPolicy
from router_rl.policies.calibration import Target, search_lambda
from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
from router_rl.policies.linear import LinearHead
from router_rl.policies.treeeval import TreeEnsemble, UnsupportedTreeError

MODELS = ("small", "big", "cloud")
FAST = {"num_boost_round": 60, "early_stopping_rounds": 10}


def _fit(toy_splits, seed: int = 0, **cfg) -> LGBMPolicy:
    X, m = toy_splits["train"]
    return LGBMPolicy(MODELS, config={**FAST, **cfg}).fit(X, m, seed=seed)


# --- numpy tree evaluator ------------------------------------------------------------------------
def _booster(seed: int, n: int = 300, d: int = 8, leaves: int = 7, classes: int = 3):
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1])  # a low-cardinality column: many rows sit exactly on thresholds
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    params = {"objective": "multiclass", "num_class": classes, "num_leaves": leaves, "verbose": -1,
              "min_data_in_leaf": 5, "seed": seed, "deterministic": True, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=15), X


@pytest.mark.parametrize("leaves", [2, 7, 12, 40])
def test_numpy_evaluator_reproduces_booster_raw_scores(leaves: int) -> None:
    booster, X = _booster(seed=leaves, leaves=leaves)
    ens = TreeEnsemble.from_booster(booster)
    want = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(ens.predict_raw(X), want, rtol=0, atol=1e-9)
    # rows exactly on a threshold go left, like LightGBM
    thr = float(ens.node_threshold.ravel()[0])
    X_on = np.tile(X[:5], (1, 1))
    X_on[:, ens.node_feature.ravel()[0]] = np.float32(thr)
    np.testing.assert_allclose(ens.predict_raw(X_on), booster.predict(X_on, raw_score=True), atol=1e-9)


def test_float32_inputs_against_double_thresholds_follow_lightgbm() -> None:
    # 0.1 is not a float32: float32(0.1) = 0.10000000149 > 0.1 must go right, its predecessor left
    dump = {
        "num_tree_per_iteration": 1,
        "max_feature_idx": 0,
        "tree_info": [{
            "num_leaves": 2,
            "tree_structure": {
                "split_feature": 0, "threshold": 0.1, "decision_type": "<=", "missing_type": "None",
                "left_child": {"leaf_value": -1.0}, "right_child": {"leaf_value": 2.0},
            },
        }],
    }
    ens = TreeEnsemble.from_dump(dump)
    x = np.float32(0.1)
    X = np.array([[x], [np.nextafter(x, np.float32(0))], [np.float32(-5)], [np.float32(7)]], dtype=np.float32)
    np.testing.assert_array_equal(ens.predict_raw(X)[:, 0], [2.0, -1.0, -1.0, 2.0])


def test_single_leaf_trees_and_remapped_features() -> None:
    dump = {
        "num_tree_per_iteration": 2,
        "max_feature_idx": 1,
        "tree_info": [
            {"num_leaves": 1, "tree_structure": {"leaf_value": 0.5}},
            {"num_leaves": 2, "tree_structure": {
                "split_feature": 1, "threshold": 0.0, "decision_type": "<=", "missing_type": "None",
                "left_child": {"leaf_value": 1.0}, "right_child": {"leaf_value": 3.0}}},
        ],
    }
    ens = TreeEnsemble.from_dump(dump)
    X = np.array([[9.0, -1.0], [9.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(ens.predict_raw(X), [[0.5, 1.0], [0.5, 3.0]])
    # feature 1 now lives in column 3 of a 4-wide input
    moved = ens.remap_features(np.array([2, 3]), 4)
    X4 = np.zeros((2, 4), dtype=np.float32)
    X4[:, 3] = X[:, 1]
    np.testing.assert_array_equal(moved.predict_raw(X4), ens.predict_raw(X))
    with pytest.raises(ValueError, match="mapping values"):
        ens.remap_features(np.array([0, 9]), 4)


def test_unsupported_splits_are_rejected_clearly() -> None:
    node = {"split_feature": 0, "threshold": 1, "decision_type": "==", "missing_type": "None",
            "left_child": {"leaf_value": 0.0}, "right_child": {"leaf_value": 1.0}}
    with pytest.raises(UnsupportedTreeError, match="decision_type"):
        TreeEnsemble.from_dump({"tree_info": [{"num_leaves": 2, "tree_structure": node}]})
    zero = dict(node, decision_type="<=", missing_type="Zero")
    with pytest.raises(UnsupportedTreeError, match="zero-as-missing"):
        TreeEnsemble.from_dump({"tree_info": [{"num_leaves": 2, "tree_structure": zero}]})


# --- linear head ----------------------------------------------------------------------------------
def test_linear_head_matches_sklearn_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)) * np.arange(1, 11)  # unequal scales: the head standardises
    Y = (rng.random((300, 2)) < 1 / (1 + np.exp(-X[:, :2] / 2))).astype(float)
    head = LinearHead.fit(X, Y, C=0.05)
    Z = (X - X.mean(0)) / X.std(0)
    for j in range(2):
        lr = LogisticRegression(C=0.05, max_iter=5000, tol=1e-10).fit(Z, Y[:, j])
        np.testing.assert_allclose(1 / (1 + np.exp(-head.logits(X)[:, j])), lr.predict_proba(Z)[:, 1], atol=1e-4)
    with pytest.raises(ValueError, match="C must be > 0"):
        LinearHead.fit(X, Y, C=0.0)


# --- the policy -----------------------------------------------------------------------------------
def test_engines_agree_and_single_rows_match_batches(toy_splits) -> None:
    pol = _fit(toy_splits)
    assert pol.metadata["metrics"]["engine"] == "numpy" and pol.linear is not None
    X, _ = toy_splits["test"]
    batch = pol.predict_raw(X)
    rows = np.vstack([pol.predict_raw(X[i : i + 1]) for i in range(20)])  # single rows: Booster.predict
    np.testing.assert_allclose(rows, batch[:20], atol=1e-6)
    ref = _fit(toy_splits, engine="booster")
    assert ref.metadata["metrics"]["engine"] == "booster"
    np.testing.assert_allclose(ref.predict_raw(X), batch, atol=1e-6)


def test_fit_is_deterministic_and_survives_save_load(toy_splits, tmp_path: Path) -> None:
    X, _ = toy_splits["test"]
    a, b = _fit(toy_splits, seed=3), _fit(toy_splits, seed=3)
    np.testing.assert_array_equal(a.predict_quality(X), b.predict_quality(X))
    c = _fit(toy_splits, seed=4)
    assert not np.array_equal(a.predict_quality(X), c.predict_quality(X))
    a.save(tmp_path / "p")
    loaded = RoutingPolicy.load(tmp_path / "p")
    assert isinstance(loaded, LGBMPolicy) and loaded.linear is not None
    np.testing.assert_allclose(loaded.predict_quality(X), a.predict_quality(X), atol=1e-12)
    (tmp_path / "p" / "linear.npz").unlink()
    from router_rl.policies import PolicyLoadError

    with pytest.raises(PolicyLoadError, match=r"linear\.npz"):
        RoutingPolicy.load(tmp_path / "p")


def test_linear_stack_off_keeps_the_plain_booster(toy_splits) -> None:
    pol = _fit(toy_splits, linear_stack=False)
    assert pol.linear is None and pol.metadata["metrics"]["linear_stack"] is False
    X, _ = toy_splits["test"]
    assert np.corrcoef(pol.predict_quality(X)[:, 0], X[:, 0])[0, 1] > 0.8


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"engine": "gpu"}, "engine"), ({"linear_c": 0.0}, "linear_c"), ({"linear_folds": 1}, "linear_folds"),
     ({"calibration_margin_z": -1.0}, "calibration_margin_z")],
)
def test_new_config_fields_are_validated(kwargs, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        LGBMConfig(**kwargs)


# --- λ calibration --------------------------------------------------------------------------------
def test_calibration_pools_training_oof_and_still_meets_the_target_on_validation(toy_splits) -> None:
    pol = _fit(toy_splits)
    Xv, v = toy_splits["val"]
    res = pol.calibrate(Xv, v, "quality=0.95")
    cal = pol.metadata["calibration"]
    assert cal["n_training_oof"] == toy_splits["train"][1].n_tasks and cal["n_val"] == v.n_tasks
    assert res.met
    out = pol.route_matrix(Xv, v)
    assert out.quality.mean() >= 0.95 * v.quality[:, pol.reference_index].mean() - 1e-9
    # the pooled point also meets the target on the pooled rows
    assert res.point.quality >= 0.95 * res.reference_quality - 1e-9
    # without the validation-alone constraint the feasible set only grows: pooled cost can only drop
    loose = pol.calibrate(Xv, v, "quality=0.95", val_must_meet=False)
    assert loose.met and loose.point.quality >= 0.95 * loose.reference_quality - 1e-9
    assert loose.point.cost <= res.point.cost + 1e-15
    pol.calibrate(Xv, v, "quality=0.95", pool_training_oof=False)
    assert pol.metadata["calibration"]["n_training_oof"] == 0


def test_margin_makes_the_quality_target_more_conservative() -> None:
    rng = np.random.default_rng(0)
    n = 200
    quality = np.stack([rng.random(n) < 0.8, rng.random(n) < 0.9], axis=1).astype(float)
    cost = np.tile([1.0, 10.0], (n, 1))
    # λ -> share of tasks sent to the cheap model grows with λ
    u = rng.random(n)

    def probs_at(lam: float) -> np.ndarray:
        cheap = u < min(1.0, lam)
        return np.stack([cheap, ~cheap], axis=1).astype(float)

    grid = np.linspace(0, 1, 101)
    kw = {"reference": 1, "reference_model": "big", "grid": grid}
    plain = search_lambda(probs_at, quality, cost, Target("quality", 0.95), **kw)
    safe = search_lambda(probs_at, quality, cost, Target("quality", 0.95), margin_z=2.0, **kw)
    assert plain.met and safe.met
    assert safe.lam < plain.lam and safe.point.quality >= plain.point.quality
    assert safe.point.cost > plain.point.cost
    with pytest.raises(ConfigError, match="margin_z"):
        search_lambda(probs_at, quality, cost, Target("quality", 0.95), margin_z=-1.0, **kw)


# --- small-data measures ----------------------------------------------------------------------------
def test_small_data_defaults_switch_on_below_the_size_threshold_only(toy_splits) -> None:
    small = _fit(toy_splits)
    met = small.metadata["metrics"]
    assert small.linear is not None and met["linear_stack"] is True
    assert met["prior_shrinkage"] in (0.0, 0.25, 0.5, 0.75) and len(met["shrinkage_oof_criterion"]) == 4
    big = _fit(toy_splits, small_data_max_tasks=10)  # the toy train split counts as "large" now
    assert big.linear is None and big.shrinkage == 0.0
    fixed = _fit(toy_splits, prior_shrinkage=0.3, linear_stack=False)
    assert fixed.shrinkage == 0.3 and fixed.linear is None


def test_choose_shrinkage_keeps_informative_predictions_and_shrinks_noise() -> None:
    from router_rl.policies.lgbm import choose_shrinkage

    rng = np.random.default_rng(0)
    n = 600
    hard = rng.random(n) < 0.5
    # cheap model succeeds on easy tasks only; the reference succeeds almost always
    quality = np.stack([~hard & (rng.random(n) < 0.95), rng.random(n) < 0.97], axis=1).astype(float)
    cost = np.tile([0.01, 1.0], (n, 1))
    prior = quality.mean(axis=0)
    informative = np.stack([np.where(hard, 0.05, 0.95), np.full(n, 0.97)], axis=1)
    s_good, crit = choose_shrinkage(informative, prior, quality, cost, reference=1)
    assert s_good == 0.0 and set(crit) == {"0.0", "0.25", "0.5", "0.75"}
    noise = np.stack([rng.random(n), rng.random(n)], axis=1)
    s_noise, crit_noise = choose_shrinkage(noise, prior, quality, cost, reference=1)
    assert s_noise > 0.0 and crit_noise[str(s_noise)] < crit_noise["0.0"]


def test_shrinkage_only_changes_the_decision_not_the_probabilities(toy_splits) -> None:
    a = _fit(toy_splits, prior_shrinkage=0.0)
    b = _fit(toy_splits, prior_shrinkage=0.75)
    X, _ = toy_splits["test"]
    np.testing.assert_array_equal(a.predict_quality(X), b.predict_quality(X))
    lam = 0.5
    da = a.decide(X, decision=a.decision.with_(lam=lam)).utility
    db = b.decide(X, decision=b.decision.with_(lam=lam)).utility
    assert not np.allclose(da, db)
