"""Reduced-rank boosting of the LightGBM router (``LGBMConfig.shared_rank``, issue #4).

Many models, few tasks: per-model trees each see one noisy 0/1 column, shared task factors see
all of them. The synthetic fleet below has a known rank-2 structure, so the shared layout must
predict held-out outcomes better than one output per model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies import PolicyLoadError, RoutingPolicy
from router_rl.policies.lgbm import SHARED_AUTO_RANK, LGBMConfig, LGBMPolicy, _make_objective, shared_loadings
from router_rl.traces.matrix import OutcomeMatrix

N_MODELS = 30
FAST = {"num_boost_round": 150, "early_stopping_rounds": 15, "linear_stack": False, "prior_shrinkage": 0.0}


def low_rank_fleet(n: int, seed: int = 0) -> tuple[np.ndarray, OutcomeMatrix, np.ndarray]:
    """Tasks with 8 features; success logit of model j = a_j + u(x) · v_j with a rank-2 ``u``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    u = np.stack([np.tanh(2 * X[:, 0]) + 0.5 * (X[:, 1] > 0), np.sin(2 * X[:, 2]) * (X[:, 3] > -0.5)], axis=1)
    model_rng = np.random.default_rng(1234)  # the same fleet for every task sample
    a = model_rng.normal(0.0, 0.7, size=N_MODELS)
    v = model_rng.normal(0.0, 1.5, size=(N_MODELS, 2))
    p = 1 / (1 + np.exp(-(a + u @ v.T)))
    quality = (rng.random(p.shape) < p).astype(float)
    models = [f"m{j:02d}" for j in range(N_MODELS)]
    cost = np.broadcast_to(np.linspace(1e-4, 1e-2, N_MODELS), quality.shape).copy()
    tasks = pl.DataFrame({"task_id": [f"t{seed}-{i}" for i in range(n)]})
    nan = np.full(quality.shape, np.nan)
    m = OutcomeMatrix(tasks=tasks, models=tuple(models), quality=quality, cost=cost, latency=nan, error=quality < 0,
                      input_tokens=nan, output_tokens=nan)
    return X, m, p


def _log_loss(q: np.ndarray, p_true: np.ndarray) -> float:
    """Expected log loss of predictions ``q`` under the true success probabilities."""
    q = np.clip(q, 1e-6, 1 - 1e-6)
    return float(-(p_true * np.log(q) + (1 - p_true) * np.log(1 - q)).mean())


@pytest.fixture(scope="module")
def fleet() -> dict[str, tuple[np.ndarray, OutcomeMatrix, np.ndarray]]:
    return {"train": low_rank_fleet(500, seed=0), "test": low_rank_fleet(1000, seed=1)}


def _fit(fleet, **cfg) -> LGBMPolicy:
    X, m, _ = fleet["train"]
    return LGBMPolicy(m.models, config={**FAST, **cfg}).fit(X, m, seed=0)


def test_loadings_are_orthonormal_signed_and_capped() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((50, 6)) < 0.5).astype(float)
    assert shared_loadings(y, 0) is None
    v = shared_loadings(y, 3, residual=False)
    assert v is not None and v.shape == (3, 6)
    np.testing.assert_allclose(v @ v.T, np.eye(3), atol=1e-10)
    assert (v[np.arange(3), np.abs(v).argmax(axis=1)] > 0).all()
    capped = shared_loadings(y, 40, residual=False)
    assert capped is not None and capped.shape == (5, 6)  # min(n, m) - 1
    stacked = shared_loadings(y, 3)
    assert stacked is not None and stacked.shape == (9, 6)
    np.testing.assert_array_equal(stacked[3:], np.eye(6))


def test_objective_is_the_chain_rule_of_the_per_model_cross_entropy() -> None:
    rng = np.random.default_rng(1)
    n, m, k = 7, 5, 3
    labels = rng.random((n, m))
    loadings = rng.normal(size=(k, m))
    base = rng.normal(size=m)
    preds = rng.normal(size=(n, k))

    def loss(f: np.ndarray) -> float:
        z = base + f @ loadings
        return float((np.logaddexp(0, z) - labels * z).sum())

    grad, hess = _make_objective(labels, loadings, base)(preds, None)
    eps = 1e-6
    num = np.zeros_like(preds)
    for i in range(n):
        for j in range(k):
            d = np.zeros_like(preds)
            d[i, j] = eps
            num[i, j] = (loss(preds + d) - loss(preds - d)) / (2 * eps)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    p = 1 / (1 + np.exp(-(base + preds @ loadings)))
    np.testing.assert_allclose(hess, (p * (1 - p)) @ (loadings**2).T)


def test_shared_factors_beat_per_model_trees_on_a_low_rank_fleet(fleet) -> None:
    Xt, _, p_true = fleet["test"]
    per_model = _fit(fleet, shared_rank=0)
    shared = _fit(fleet, shared_rank=2)
    hybrid = _fit(fleet, shared_rank=2, shared_residual=True)
    assert shared.metadata["metrics"]["shared_rank"] == 2 and per_model.metadata["metrics"]["shared_rank"] == 0
    assert shared._booster.num_model_per_iteration() == 2
    assert hybrid._booster.num_model_per_iteration() == 2 + N_MODELS
    ll = {name: _log_loss(pol.predict_raw(Xt), p_true) for name, pol in
          {"per_model": per_model, "shared": shared, "hybrid": hybrid}.items()}
    floor = _log_loss(p_true, p_true)  # the Bayes risk
    # the shared layout removes most of the per-model trees' excess loss
    assert ll["shared"] - floor < 0.6 * (ll["per_model"] - floor), ll
    assert ll["hybrid"] < ll["per_model"], ll


def test_engines_agree_and_save_load_round_trips(fleet, tmp_path: Path) -> None:
    Xt, _, _ = fleet["test"]
    pol = _fit(fleet, shared_rank=3, linear_stack=True)
    assert pol.metadata["metrics"]["engine"] == "numpy"
    batch = pol.predict_raw(Xt)
    rows = np.vstack([pol.predict_raw(Xt[i : i + 1]) for i in range(10)])  # < 8 rows: Booster.predict
    np.testing.assert_allclose(rows, batch[:10], atol=1e-6)
    pol.save(tmp_path / "p")
    loaded = RoutingPolicy.load(tmp_path / "p")
    assert isinstance(loaded, LGBMPolicy) and loaded.loadings is not None
    np.testing.assert_allclose(loaded.predict_quality(Xt), pol.predict_quality(Xt), atol=1e-12)
    np.testing.assert_array_equal(loaded.act(Xt), pol.act(Xt))

    meta_path = tmp_path / "p" / "policy.json"
    meta = json.loads(meta_path.read_text())
    meta["state"]["loadings"] = meta["state"]["loadings"][:2]  # 2 outputs, booster has 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match="booster has 3 outputs, expected 2"):
        RoutingPolicy.load(tmp_path / "p")


def test_auto_rank_switches_on_for_wide_fleets_only(fleet, toy_splits) -> None:
    cfg = LGBMConfig()
    assert cfg.shared_rank is None and cfg.resolved_shared_rank(N_MODELS) == SHARED_AUTO_RANK
    assert cfg.resolved_shared_rank(cfg.shared_min_models - 1) == 0
    assert LGBMConfig(shared_rank=0).resolved_shared_rank(100) == 0
    wide = _fit(fleet)
    assert wide.loadings is not None and wide.loadings.shape == (SHARED_AUTO_RANK, N_MODELS)
    X, m = toy_splits["train"]  # 3 models: one output per model, as before
    narrow = LGBMPolicy(m.models, config=FAST).fit(X, m, seed=0)
    assert narrow.loadings is None and narrow._booster.num_model_per_iteration() == 3
    assert narrow.metadata["metrics"]["shared_rank"] == 0


@pytest.mark.parametrize(("kwargs", "field"), [({"shared_rank": -1}, "shared_rank"),
                                               ({"shared_min_models": 0}, "shared_min_models")])
def test_config_is_validated(kwargs, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        LGBMConfig(**kwargs)
