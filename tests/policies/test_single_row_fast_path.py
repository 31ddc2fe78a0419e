"""The LightGBM router's single-row path (the live router's) scores exactly as the batch path.

One row goes through the compiled trees' single-row walk (numba, or the numpy evaluator without
it) instead of ``Booster.predict``; these tests pin that a row's prediction and decision do not
depend on whether it came alone or in a batch.
"""

from __future__ import annotations

import numpy as np
import pytest

import router_rl.policies.treeeval as treeeval
from router_rl.features import EncoderConfig, FeatureEncoder
from router_rl.policies.decision import DecisionConfig, decide
from router_rl.policies.lgbm import LGBMPolicy
from router_rl.traces.simulate import simulate_fleet

FAST = {"num_boost_round": 60, "early_stopping_rounds": 10}
N_ROWS = 180


@pytest.fixture(scope="module")
def fitted() -> tuple[LGBMPolicy, np.ndarray]:
    matrix = simulate_fleet(900, seed=3).matrix()
    train = matrix.split("train")
    enc = FeatureEncoder(EncoderConfig()).fit(train.tasks)
    pol = LGBMPolicy(matrix.models, config=FAST).fit(enc.transform(train.tasks), train, seed=0)
    pol.attach_encoder(enc)
    assert pol._engine is not None and pol.cost_model is not None and pol.cost_model._ens is not None
    X = enc.transform(matrix.split("test").tasks)[:N_ROWS]
    assert X.shape[0] == N_ROWS
    return pol, X


def test_single_row_quality_and_decision_equal_the_batch_rows_bitwise(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    pol, X = fitted
    raw, q, probs = pol.predict_raw(X), pol.predict_quality(X), pol.action_distribution(X)
    for i in range(X.shape[0]):
        x = X[i : i + 1]
        assert pol.predict_raw(x).tobytes() == raw[i : i + 1].tobytes(), i
        assert pol.predict_quality(x).tobytes() == q[i : i + 1].tobytes(), i
        assert pol.action_distribution(x).tobytes() == probs[i : i + 1].tobytes(), i
    assert len({int(a) for a in probs.argmax(axis=1)}) >= 2  # the rows exercise more than one choice


def test_single_row_cost_model_matches_the_batch(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    """The ensemble's raw outputs are bit-identical; the cost model's dense products after them
    (``raw @ loadings``, ``y @ coef`` in costmodel.py) are BLAS calls whose rounding depends on the
    number of rows, so cost / latency agree to a few ulps (documented in docs/features.md)."""
    pol, X = fitted
    cm = pol.cost_model
    assert cm is not None and cm._ens is not None
    raw = cm._ens.predict_raw(X)
    cost, lat = cm.predict(X)
    for i in range(X.shape[0]):
        x = X[i : i + 1]
        assert cm._ens.predict_raw(x).tobytes() == raw[i : i + 1].tobytes(), i
        c1, l1 = cm.predict(x)
        np.testing.assert_allclose(c1, cost[i : i + 1], rtol=1e-12, atol=0)
        np.testing.assert_allclose(l1, lat[i : i + 1], rtol=1e-12, atol=0)


def test_single_row_never_calls_booster_predict(fitted: tuple[LGBMPolicy, np.ndarray], monkeypatch) -> None:
    pol, X = fitted
    expected = pol.action_distribution(X[:5])

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("Booster.predict called on the single-row path")

    assert pol.cost_model is not None
    monkeypatch.setattr(pol._booster, "predict", refuse)
    monkeypatch.setattr(pol.cost_model.booster, "predict", refuse)
    for i in range(5):
        assert pol.action_distribution(X[i : i + 1]).tobytes() == expected[i : i + 1].tobytes()


def test_compiled_walk_and_numpy_evaluator_give_the_same_bytes(
    fitted: tuple[LGBMPolicy, np.ndarray], monkeypatch
) -> None:
    pol, X = fitted
    pytest.importorskip("numba")  # a core dependency: the compiled side must exist to compare
    eng = pol._engine
    d, m = X.shape[1], pol.n_models
    ft = np.zeros((d + m, X.shape[0]), dtype=np.float32)
    ft[:d] = X.T
    assert treeeval._one_row_kernel() is not None
    compiled = [eng.predict_raw_t(np.ascontiguousarray(ft[:, i : i + 1])) for i in range(X.shape[0])]
    monkeypatch.setattr(treeeval, "_one_row_kernel", lambda: None)
    for i in range(X.shape[0]):
        one = eng.predict_raw_t(np.ascontiguousarray(ft[:, i : i + 1]))
        assert one.tobytes() == compiled[i].tobytes(), i


def test_walk_of_a_forest_with_many_trees_per_output_matches_numpy(monkeypatch) -> None:
    """More than 128 trees per output: NumPy's pairwise summation recurses; the kernel must too."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = X[:, 0] * 2 + np.sin(3 * X[:, 1]) + rng.normal(scale=0.1, size=400)
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 7, "verbose": -1, "learning_rate": 0.05, "min_data_in_leaf": 5},
        lgb.Dataset(X, y),
        num_boost_round=300,
    )
    ens = treeeval.TreeEnsemble.from_booster(booster)
    assert ens.split_trees.size > 256
    batch = ens.predict_raw(X)
    one = np.vstack([ens.predict_raw(X[i : i + 1]) for i in range(X.shape[0])])
    assert one.tobytes() == batch.tobytes()
    np.testing.assert_allclose(batch[:, 0], booster.predict(X, raw_score=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [
        DecisionConfig(),
        DecisionConfig(lam=0.7, mu=0.3),
        DecisionConfig(lam=2.0, privacy_local_only=False),
        DecisionConfig(lam=0.5, temperature=0.2, epsilon=0.1),  # not the argmax fast path: same general code
        DecisionConfig(lam=0.5, quality_floor=0.6, escalate_below=0.7),
    ],
    ids=["default", "lam-mu", "no-privacy", "softmax-eps", "floor-escalate"],
)
def test_decide_of_one_row_equals_its_batch_row(cfg: DecisionConfig) -> None:
    rng = np.random.default_rng(4)
    n, m = 300, 5
    q = rng.random((n, m))
    q[:10] = 0.5  # ties: argmax must pick the same (first) model
    cost = rng.random((n, m)) * 1e-3
    lat = np.where(rng.random((n, m)) < 0.1, np.nan, rng.random((n, m)))
    sens = rng.random(n) < 0.3
    local = np.array([True, False, True, False, False])
    kw = {"cost_scale": 1e-3, "latency_scale": 0.5, "is_local": local}
    full = decide(q, cost, lat, cfg, sensitive=sens, **kw)
    for i in range(n):
        one = decide(q[i : i + 1], cost[i : i + 1], lat[i : i + 1], cfg, sensitive=sens[i : i + 1], **kw)
        for name in ("probs", "utility", "allowed", "escalated"):
            a, b = getattr(one, name), getattr(full, name)[i : i + 1]
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (i, name)
    restricted = full.allowed[sens].sum() < sens.sum() * m
    assert sens.any() and restricted == cfg.privacy_local_only  # privacy rows restricted exactly when asked
    with pytest.raises(ValueError, match="no candidate model is local"):
        decide(q[:1], cost[:1], lat[:1], DecisionConfig(), sensitive=np.ones(1, bool), cost_scale=1.0,
               is_local=np.zeros(m, bool))
    with pytest.raises(ValueError, match="need the model locations"):
        decide(q[:1], cost[:1], None, DecisionConfig(), sensitive=np.ones(1, bool), cost_scale=1.0)
