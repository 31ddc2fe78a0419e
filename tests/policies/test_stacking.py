"""The stacked meta-model (``lgbm-stack``) and the small-data booster shape (issue #19)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from router_rl.policies import RoutingPolicy
from router_rl.policies.lgbm import LGBMPolicy
from router_rl.policies.lgbm_config import LGBMConfig
from router_rl.policies.stacking import SELECTION_LAMBDAS, StackedPolicy, oof_utility
from router_rl.traces import OutcomeMatrix

MODELS = ("a", "b", "big")


def _dense_signal(n: int, seed: int) -> tuple[np.ndarray, OutcomeMatrix]:
    """Success driven by the sum of 40 of 80 weak features: linear, spread thin over columns.

    With 150 training tasks, shallow trees find no split worth keeping (the cross-fit stops after
    a couple of rounds: the per-model means), while a linear model or kNN sees the direction.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 80)).astype(np.float32)
    s = X[:, :40].sum(axis=1) / np.sqrt(40) * 1.5
    p = np.stack([1 / (1 + np.exp(-s)), 1 / (1 + np.exp(s)), np.full(n, 0.9)], axis=1)
    q = (rng.random((n, 3)) < p).astype(float)
    m = OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": [f"t{i}" for i in range(n)]}),
        models=MODELS,
        quality=q,
        cost=np.tile([1e-4, 1e-4, 1e-2], (n, 1)),
        latency=np.ones((n, 3)),
        error=np.zeros((n, 3), dtype=bool),
        input_tokens=np.full((n, 3), np.nan),
        output_tokens=np.full((n, 3), np.nan),
    )
    return X, m


def _test_aiq(policy: object, X: np.ndarray, m: OutcomeMatrix) -> float:
    from router_rl.ope.metrics import aiq

    rows = np.arange(m.n_tasks)
    c, q = [], []
    for lam in SELECTION_LAMBDAS:
        a = policy.decide(X, decision=policy.decision.with_(lam=float(lam))).probs.argmax(axis=1)  # type: ignore[attr-defined]
        c.append(m.cost[rows, a].mean())
        q.append(m.quality[rows, a].mean())
    return aiq(c, q, cost_max=float(m.cost.mean(axis=0).max()))


@pytest.mark.slow
def test_stacking_beats_the_plain_booster_where_it_collapses_to_the_means() -> None:
    X, m = _dense_signal(1150, seed=0)
    tr, te = np.arange(150), np.arange(150, 1150)
    train, test = m.take(tr), m.take(te)
    plain = LGBMPolicy(MODELS).fit(X[tr], train, seed=0)
    stack = StackedPolicy(MODELS).fit(X[tr], train, seed=0)
    assert plain.metadata["metrics"]["rounds"] <= 5  # the symptom: each model's mean, nearly
    a_plain, a_stack = _test_aiq(plain, X[te], test), _test_aiq(stack, X[te], test)
    assert a_stack > a_plain + 0.02, (a_stack, a_plain)
    # the served predictor ranks the tasks of a model better than the collapsed booster
    from sklearn.metrics import roc_auc_score

    auc = [roc_auc_score(test.quality[:, 0], p.predict_quality(X[te])[:, 0]) for p in (plain, stack)]
    assert auc[1] > auc[0] + 0.02, auc


@pytest.mark.slow
def test_the_choice_and_the_reason_are_recorded_and_survive_save_load(tmp_path) -> None:
    X, m = _dense_signal(400, seed=1)
    tr, te = np.arange(200), np.arange(200, 400)
    stack = StackedPolicy(MODELS, config={"folds": 3}).fit(X[tr], m.take(tr), seed=0)
    info = stack.metadata["stack"]
    assert set(info["oof_criterion"]) == {"stack", "linear", "knn", "prior"}
    best = max(info["oof_criterion"], key=info["oof_criterion"].get)
    assert info["chosen"] in (best, "stack")
    assert best in info["reason"] or "stacked booster" in info["reason"]
    if info["chosen"] == "stack" and best != "stack":  # kept: the lead was within the noise
        assert "SE" in info["reason"] and info["lead_se"] > 0
    assert info["n_tasks"] == 200 and info["folds"] == 3
    # small-data tree shape applied to the inner booster and recorded
    assert info["lgbm_small_data_changes"]["learning_rate"] == 0.03
    assert info["lgbm_small_data_changes"]["min_data_in_leaf"] == 8
    assert info["lgbm_rounds"] >= 1
    stack.save(tmp_path / "s")
    back = RoutingPolicy.load(tmp_path / "s")
    assert isinstance(back, StackedPolicy) and back.chosen == stack.chosen
    assert back.metadata["stack"] == stack.metadata["stack"]
    for chosen in ("stack", "linear", "knn", "prior"):  # every candidate serves identically after load
        stack.chosen = back.chosen = chosen
        np.testing.assert_array_equal(back.predict_quality(X[te]), stack.predict_quality(X[te]))


def test_selection_off_always_serves_the_stacked_booster(toy_splits) -> None:
    X, m = toy_splits["train"]
    pol = StackedPolicy(m.models, config={"folds": 3, "select": "stack", "base_learners": ["linear"],
                                          "lgbm": {"num_boost_round": 20}}).fit(X, m, seed=0)
    assert pol.chosen == "stack" and "selection off" in pol.metadata["stack"]["reason"]
    assert pol.metadata["stack"]["base_learners"] == ["linear"]


def test_bad_inner_config_is_refused_at_construction() -> None:
    from router_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="num_leaves"):
        StackedPolicy(MODELS, config={"lgbm": {"num_leaves": 1}})


def test_oof_utility_prefers_the_informative_score() -> None:
    rng = np.random.default_rng(0)
    n = 300
    q = np.stack([rng.random(n) < 0.5, np.ones(n, dtype=bool)], axis=1).astype(float)
    cost = np.tile([1e-4, 1e-2], (n, 1))
    informed = np.stack([q[:, 0] * 0.8 + 0.1, np.full(n, 0.9)], axis=1)
    uninformed = np.tile([0.5, 0.9], (n, 1))
    assert oof_utility(informed, q, cost) > oof_utility(uninformed, q, cost) + 0.1
    # without a cost axis: the mean quality of the argmax
    flat = np.ones((n, 2))
    assert oof_utility(informed, q, flat) == pytest.approx(q[np.arange(n), informed.argmax(axis=1)].mean())


# --- LGBMConfig.scaled_to --------------------------------------------------------------------------
def test_scaled_to_small_data_shape() -> None:
    cfg, changes = LGBMConfig().scaled_to(172)  # the chat matrix
    assert changes == {"min_data_in_leaf": 7, "learning_rate": 0.03, "early_stopping_rounds": 60}
    assert (cfg.min_data_in_leaf, cfg.num_leaves, cfg.learning_rate) == (7, 7, 0.03)
    cfg, changes = LGBMConfig().scaled_to(100)
    assert (cfg.min_data_in_leaf, cfg.num_leaves) == (5, 6)
    assert LGBMConfig().scaled_to(700)[0].learning_rate == 0.05


def test_scaled_to_keeps_explicit_fields_and_large_data() -> None:
    cfg, changes = LGBMConfig(learning_rate=0.2, min_data_in_leaf=3).scaled_to(150)
    assert cfg.learning_rate == 0.2 and cfg.min_data_in_leaf == 3 and "learning_rate" not in changes
    big, changes = LGBMConfig().scaled_to(5000)
    assert changes == {} and big == LGBMConfig()
