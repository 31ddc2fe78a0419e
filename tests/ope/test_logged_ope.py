"""Array-level OPE on logs: cross-fitted reward models, paired differences, support checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from router_rl.ope import OPEInputError
from router_rl.ope.estimators import IPS, SNIPS
from router_rl.ope.logged import (
    EXACT,
    LOGGED,
    ON_POLICY,
    MetricData,
    evaluate_logged,
    fit_metric,
)
from router_rl.ope.reward_model import assign_folds, cross_fit_reward_model
from router_rl.ope.support import support_check
from router_rl.ope.synthetic import make_bandit


def _linear_problem(n: int = 600, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    beta = rng.normal(size=(k, 4))
    a = rng.integers(0, k, n)
    truth = X @ beta.T + np.arange(k)[None, :]
    return X, a, truth[np.arange(n), a], truth


# --- reward model -------------------------------------------------------------------------------
def test_folds_are_balanced_and_seeded():
    f = assign_folds(10, 3, 0)
    assert sorted(np.bincount(f).tolist()) == [3, 3, 4]
    assert np.array_equal(f, assign_folds(10, 3, 0))
    assert not np.array_equal(assign_folds(100, 3, 0), assign_folds(100, 3, 1))


def test_cross_fit_never_predicts_a_row_from_its_own_reward():
    X, a, r, _ = _linear_problem()
    fit = cross_fit_reward_model(X, a, r, 3, folds=4, kind="lightgbm", seed=3)
    r2 = r.copy()
    r2[0] += 100.0  # only the models that did not see row 0... do not see it
    fit2 = cross_fit_reward_model(X, a, r2, 3, folds=4, kind="lightgbm", seed=3)
    np.testing.assert_array_equal(fit.predictions[0], fit2.predictions[0])
    same_fold = fit.fold_of_row == fit.fold_of_row[0]
    assert not np.allclose(fit.predictions[~same_fold], fit2.predictions[~same_fold])
    np.testing.assert_array_equal(fit.predictions[same_fold], fit2.predictions[same_fold])


def test_ridge_recovers_a_linear_reward_for_every_action():
    X, a, r, truth = _linear_problem(n=900)
    fit = cross_fit_reward_model(X, a, r, 3, folds=3, kind="ridge", params={"alpha": 1e-6})
    assert fit.describe() == {"kind": "ridge", "folds": 3, "params": {"alpha": 1e-6, "pca_components": None}, "seed": 0}
    np.testing.assert_allclose(fit.predictions, truth, atol=1e-3)


def test_lightgbm_is_reproducible_and_learns_action_effects():
    rng = np.random.default_rng(1)
    n, k = 1500, 4
    X = rng.normal(size=(n, 3))
    a = rng.integers(0, k, n)
    means = np.array([0.1, 0.4, 0.6, 0.9])
    r = (rng.random(n) < means[a]).astype(float)
    f1 = cross_fit_reward_model(X, a, r, k, folds=3, seed=5)
    f2 = cross_fit_reward_model(X, a, r, k, folds=3, seed=5)
    np.testing.assert_array_equal(f1.predictions, f2.predictions)
    np.testing.assert_allclose(f1.predictions.mean(axis=0), means, atol=0.06)
    assert f1.describe()["kind"] == "lightgbm" and f1.describe()["params"]["num_boost_round"] == 60


def test_pca_components_project_each_fold_on_its_own_training_rows():
    X, a, r, truth = _linear_problem(n=900)
    wide = np.column_stack([X, np.zeros((900, 3))])  # constant columns add nothing
    fit = cross_fit_reward_model(wide, a, r, 3, folds=3, kind="ridge", params={"alpha": 1e-6, "pca_components": 4})
    # 4 components span the 4 informative (standardised) columns: the linear reward is recovered
    np.testing.assert_allclose(fit.predictions, truth, atol=1e-3)
    few = cross_fit_reward_model(wide, a, r, 3, folds=3, kind="ridge", params={"alpha": 1e-6, "pca_components": 1})
    assert np.abs(few.predictions - truth).max() > 0.1
    lg = cross_fit_reward_model(wide, a, r, 3, folds=3, params={"pca_components": 4})
    assert lg.params["pca_components"] == 4 and lg.predictions.shape == (900, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"folds": 1}, "folds: expected an integer >= 2"),
        ({"kind": "forest"}, "unknown reward model 'forest'"),
        ({"params": {"seed": 3}}, "set from `seed`"),
        ({"kind": "ridge", "params": {"num_leaves": 3}}, "unknown ridge parameters"),
        ({"params": {"pca_components": 0}}, "pca_components: expected an integer >= 1"),
    ],
)
def test_reward_model_errors_name_the_argument(kwargs, match):
    X, a, r, _ = _linear_problem(n=50)
    with pytest.raises(OPEInputError, match=match):
        cross_fit_reward_model(X, a, r, 3, **kwargs)


# --- evaluate_logged ----------------------------------------------------------------------------
def _bandit_log(seed: int, n: int = 2000, k: int = 4):
    b = make_bandit(n, k, seed)
    logs = b.sample_logs(seed + 1000)
    return b, logs


def test_the_logging_policy_as_target_reproduces_the_on_policy_mean():
    b, logs = _bandit_log(0)
    md = MetricData("quality", logs.rewards, b.reward_hat, {"kind": "given"})
    res = evaluate_logged(
        actions=logs.actions,
        propensities=logs.propensities,
        logging_probs=b.logging,
        targets={"same": b.logging, "t": b.target},
        metrics=[md],
        models=list("abcd"),
        n_bootstrap=100,
    )
    on = res.incumbent_result.metrics["quality"].estimates[ON_POLICY]
    assert on.value == pytest.approx(logs.rewards.mean())
    same = res.policies["same"].metrics["quality"]
    assert same.estimates["ips"].value == pytest.approx(on.value)
    # paired: the same resamples on both sides, so IPS(logger) - on-policy is exactly 0 in every one
    d = same.difference["ips"]
    assert d.value == pytest.approx(0.0) and d.lower == pytest.approx(0.0) and d.upper == pytest.approx(0.0)
    assert res.policies["same"].weights.max_weight == pytest.approx(1.0)
    assert set(res.policies["t"].metrics["quality"].estimates) == {"dm", "ips", "snips", "dr", "switch_dr"}
    assert res.reward_models == {"quality": {"kind": "given"}}


def test_paired_difference_against_another_target_is_paired():
    b, logs = _bandit_log(1)
    md = MetricData("quality", logs.rewards, b.reward_hat)
    res = evaluate_logged(
        actions=logs.actions,
        propensities=logs.propensities,
        logging_probs=b.logging,
        targets={"t": b.target, "t_again": b.target.copy()},
        metrics=[md],
        models=list("abcd"),
        incumbent="t",
        n_bootstrap=100,
    )
    assert res.incumbent_result is None
    assert res.policies["t"].metrics["quality"].difference is None
    for e in res.policies["t_again"].metrics["quality"].difference.values():
        assert (e.value, e.lower, e.upper) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


def test_intervals_cover_the_true_value_on_synthetic_logs():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    reps = 20
    b = make_bandit(1500, 4, 7)
    for s in range(reps):
        logs = b.sample_logs(s)
        res = evaluate_logged(
            actions=logs.actions,
            propensities=logs.propensities,
            logging_probs=b.logging,
            targets={"t": b.target},
            metrics=[MetricData("quality", logs.rewards, b.reward_hat)],
            models=list("abcd"),
            n_bootstrap=200,
            seed=s,
        )
        est = res.policies["t"].metrics["quality"].estimates
        for k in covered:
            covered[k] += est[k].lower <= b.true_value <= est[k].upper
    assert all(c >= 17 for c in covered.values()), covered


def test_exact_metric_is_the_distribution_average():
    b, logs = _bandit_log(2)
    local = np.array([1.0, 0.0, 1.0, 0.0])
    res = evaluate_logged(
        actions=logs.actions,
        propensities=logs.propensities,
        logging_probs=b.logging,
        targets={"t": b.target},
        metrics=[],
        exact_metrics={"local_share": local},
        models=list("abcd"),
        n_bootstrap=50,
    )
    mr = res.policies["t"].metrics["local_share"]
    assert mr.exact and set(mr.estimates) == {EXACT}
    assert mr.estimates[EXACT].value == pytest.approx(float((b.target @ local).mean()))
    inc = res.incumbent_result.metrics["local_share"].estimates[EXACT].value
    assert inc == pytest.approx(float((b.logging @ local).mean()))
    assert mr.difference[EXACT].value == pytest.approx(mr.estimates[EXACT].value - inc)
    assert res.reward_models == {"local_share": None}


def test_unlabeled_rows_are_excluded_and_counted():
    b, logs = _bandit_log(3)
    r = logs.rewards.copy()
    r[:300] = np.nan
    md = fit_metric("quality", b.expected_reward, logs.actions, r, 4, folds=2, kind="ridge")
    assert np.isnan(md.reward_hat[:300]).all() and np.isfinite(md.reward_hat[300:]).all()
    res = evaluate_logged(
        actions=logs.actions,
        propensities=logs.propensities,
        logging_probs=b.logging,
        targets={"t": b.target},
        metrics=[md],
        models=list("abcd"),
        n_bootstrap=50,
    )
    mr = res.policies["t"].metrics["quality"]
    assert (mr.n, mr.n_excluded) == (1700, 300)
    w = b.target[np.arange(2000), logs.actions] / logs.propensities
    assert mr.estimates["ips"].value == pytest.approx(float((w * logs.rewards)[300:].mean()))
    assert res.reward_models["quality"]["kind"] == "ridge"


def test_a_metric_without_reward_model_runs_only_ips_and_snips_and_says_so():
    b, logs = _bandit_log(4)

    def run(**estimators: Any) -> Any:
        return evaluate_logged(
            actions=logs.actions,
            propensities=logs.propensities,
            logging_probs=b.logging,
            targets={"t": b.target},
            metrics=[MetricData("quality", logs.rewards)],
            models=list("abcd"),
            n_bootstrap=50,
            **estimators,
        )

    res = run(estimators=[IPS(), SNIPS()])
    assert set(res.policies["t"].metrics["quality"].estimates) == {"ips", "snips"}
    assert res.warnings == []
    res2 = run()
    assert "no reward model" in res2.warnings[0]


def test_propensity_must_match_the_logging_distribution():
    b, logs = _bandit_log(5)
    p = logs.propensities.copy()
    p[7] = p[7] / 2
    with pytest.raises(OPEInputError, match=r"propensities\[7\]: differs from logging_probs"):
        evaluate_logged(
            actions=logs.actions,
            propensities=p,
            logging_probs=b.logging,
            targets={"t": b.target},
            metrics=[],
            models=list("abcd"),
        )


def test_unknown_incumbent_is_refused():
    b, logs = _bandit_log(5)
    with pytest.raises(OPEInputError, match="incumbent: expected 'logged' or one of"):
        evaluate_logged(
            actions=logs.actions,
            propensities=logs.propensities,
            logging_probs=b.logging,
            targets={"t": b.target},
            metrics=[],
            models=list("abcd"),
            incumbent="nope",
        )
    assert LOGGED == "logged"


# --- support ------------------------------------------------------------------------------------
def _support_fixture():
    # 4 rows, 3 models; the logger never gives model 2 any mass on rows 0-1 (group "x")
    p0 = np.array([[0.5, 0.5, 0.0], [0.6, 0.4, 0.0], [0.3, 0.3, 0.4], [0.2, 0.4, 0.4]])
    actions = np.array([0, 1, 2, 1])
    target = np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return p0, actions, target


def test_support_check_per_row():
    p0, a, t = _support_fixture()
    sc = support_check(t, p0, a, ["m0", "m1", "m2"], row_labels=["r0", "r1", "r2", "r3"])
    assert sc.violated and sc.rows_unsupported == 2
    assert sc.unsupported_mass == pytest.approx((0.5 + 1.0) / 4)
    assert [w.context for w in sc.worst] == ["r1", "r0"]
    assert sc.worst[0].never_tried == ("m2",) and sc.worst[0].unsupported_mass == pytest.approx(1.0)
    assert sc.group_by == ()


def test_support_check_by_group_counts_models_never_chosen_for_similar_tasks():
    p0, a, t = _support_fixture()
    groups = np.array(["category=x", "category=x", "category=y", "category=y"])
    sc = support_check(t, p0, a, ["m0", "m1", "m2"], groups=groups, group_by=("category",))
    # group x chose m0 and m1: m2 never tried (mass 0.5 and 1.0); group y chose m2 and m1: m0 never
    # tried (row 3 puts all its mass there although its propensity is 0.2)
    assert sc.never_tried_mass == pytest.approx((0.5 + 1.0 + 0.0 + 1.0) / 4)
    assert sc.unsupported_mass == pytest.approx(1.5 / 4)
    assert [w.context for w in sc.worst] == ["category=x", "category=y"]
    x, y = sc.worst
    assert (x.n_rows, x.never_tried, x.unsupported_mass) == (2, ("m2",), pytest.approx(0.75))
    assert (y.never_tried, y.unsupported_mass, y.never_tried_mass) == (("m0",), 0.0, pytest.approx(0.5))
    d = sc.to_dict()
    assert d["group_by"] == ["category"] and d["worst"][0]["never_tried"] == ["m2"]


def test_support_warning_lands_in_the_evaluation():
    p0, a, t = _support_fixture()
    res = evaluate_logged(
        actions=a,
        propensities=p0[np.arange(4), a],
        logging_probs=p0,
        targets={"bold": t},
        metrics=[MetricData("quality", np.array([1.0, 0.0, 1.0, 1.0]))],
        estimators=[IPS()],
        models=["m0", "m1", "m2"],
        n_bootstrap=20,
    )
    assert res.policies["bold"].support.violated
    assert any(w.startswith("bold: 37.50% of its probability mass") for w in res.warnings)
