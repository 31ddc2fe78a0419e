"""Per-task cost / latency prediction of the LightGBM router (router_rl.policies.costmodel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies import PolicyLoadError, RoutingPolicy
from router_rl.policies.costmodel import BOOSTER_FILE, CostModelSettings, detect_bases, fit_cost_model
from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
from router_rl.traces import ModelCatalog, ModelSpec, OutcomeMatrix

MODELS = ("small", "big", "cloud")
FAST = {"num_boost_round": 60, "early_stopping_rounds": 10}
CATALOG = ModelCatalog(
    [
        ModelSpec("small", "ollama", "local", gpu_usd_per_hour=0.5, tokens_per_s=100.0),
        ModelSpec("big", "vllm", "local", gpu_usd_per_hour=1.2, tokens_per_s=40.0),
        ModelSpec("cloud", "anthropic", "cloud", 3.0, 15.0),
    ]
)


def token_matrix(n: int = 900, seed: int = 0) -> tuple[np.ndarray, OutcomeMatrix]:
    """Output tokens grow with feature 0, input tokens with feature 1; cost = the catalog's price.

    Feature 2 drives the local models' success (the cloud model is good and expensive).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    x0, x1, x2 = (X[:, k].astype(np.float64) for k in range(3))
    verbosity = np.array([1.0, 1.3, 0.8])
    out = np.round(np.exp(4.5 + 1.2 * x0)[:, None] * verbosity * rng.lognormal(0.0, 0.15, (n, 3)))
    inp = np.round(300.0 * np.exp(0.5 * x1))[:, None] * np.ones((1, 3))
    cost = np.stack([CATALOG[m].cost(inp[:, j], out[:, j]) for j, m in enumerate(MODELS)], axis=1)
    gpu_s = np.stack([CATALOG[m].gpu_seconds(inp[:, j], out[:, j]) for j, m in enumerate(MODELS[:2])], axis=1)
    latency = np.column_stack([gpu_s * rng.lognormal(0.0, 0.1, (n, 2)), 0.3 + out[:, 2] / 60.0])
    p = np.stack([1 / (1 + np.exp(-3 * x2)), 1 / (1 + np.exp(-(3 * x2 + 1.5))), np.full(n, 0.95)], axis=1)
    m = OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": [f"t{i}" for i in range(n)]}),
        models=MODELS,
        quality=(rng.random((n, 3)) < p).astype(float),
        cost=cost,
        latency=latency,
        error=np.zeros((n, 3), dtype=bool),
        input_tokens=inp,
        output_tokens=out,
        catalog=CATALOG,
    )
    return X, m


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, OutcomeMatrix]]:
    X, m = token_matrix()
    idx = {"train": np.arange(0, 600), "val": np.arange(600, 750), "test": np.arange(750, 900)}
    return {k: (X[v], m.take(v)) for k, v in idx.items()}


@pytest.fixture(scope="module")
def fitted(splits) -> LGBMPolicy:
    X, m = splits["train"]
    return LGBMPolicy(MODELS, config=FAST).fit(X, m, seed=0)


def _col_mean(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per-column mean over the ``ok`` cells (NaN for a column without any)."""
    cnt = ok.sum(axis=0)
    return np.where(cnt > 0, np.where(ok, values, 0.0).sum(axis=0) / np.maximum(cnt, 1), np.nan)


def _mae(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    ok = np.isfinite(truth)
    return _col_mean(np.abs(np.where(ok, pred - np.where(ok, truth, 0.0), 0.0)), ok)


def test_predicted_cost_tracks_tokens_far_better_than_the_mean(fitted: LGBMPolicy, splits) -> None:
    X, m = splits["test"]
    info = fitted.metadata["cost_model"]
    assert info["requested"] == "auto" and info["mode"] == "predicted"
    assert info["cost_basis"] == {"small": "tokens", "big": "tokens", "cloud": "tokens"}
    assert set(info["latency_basis"].values()) == {"predicted"}
    cost, lat = fitted.predict_cost(X), fitted.predict_latency(X)
    assert cost.shape == lat.shape == (m.n_tasks, 3)
    mean_cost = np.broadcast_to(fitted.cost_mean, cost.shape)
    mean_lat = np.broadcast_to(fitted.latency_mean, lat.shape)
    # the output length spans ~10x across tasks: the mean is far off, the prediction is close
    assert (_mae(cost, m.cost) < 0.4 * _mae(mean_cost, m.cost)).all(), (_mae(cost, m.cost), _mae(mean_cost, m.cost))
    assert (_mae(lat, m.latency) < 0.5 * _mae(mean_lat, m.latency)).all()
    # expected values, not medians: the predicted mean cost is unbiased within a few percent
    np.testing.assert_allclose(cost.mean(axis=0), m.cost.mean(axis=0), rtol=0.1)
    # a single request goes through the booster, a batch through the compiled trees: same numbers
    np.testing.assert_allclose(fitted.predict_cost(X[:1]), cost[:1], rtol=1e-6)


def test_decisions_use_the_per_task_cost(fitted: LGBMPolicy, splits) -> None:
    X, _ = splits["test"]
    d = fitted.decide(X, decision=fitted.decision.with_(lam=1.0))
    cost = fitted.predict_cost(X)
    util = fitted.predict_quality(X) - 1.0 * cost / fitted.cost_mean[fitted.reference_index]
    np.testing.assert_allclose(d.utility, util, rtol=1e-6, atol=1e-9)
    expl = fitted.explain(X[:2])
    assert expl[0]["per_model"]["cloud"]["exp_cost_usd"] == pytest.approx(float(cost[0, 2]))


def test_without_token_or_latency_columns_it_falls_back_to_the_means(toy_splits) -> None:
    X, m = toy_splits["train"]  # cost = price x a random row factor; latency random; no tokens
    pol = LGBMPolicy(MODELS, config=FAST).fit(X, m, seed=0)
    info = pol.metadata["cost_model"]
    assert info["mode"] == "mean" and pol.cost_model is None, info
    Xt, _ = toy_splits["test"]
    np.testing.assert_array_equal(pol.predict_cost(Xt), np.broadcast_to(m.cost.mean(axis=0), (Xt.shape[0], 3)))
    # constant cost and no latency at all: nothing to predict
    flat = OutcomeMatrix(
        tasks=m.tasks,
        models=m.models,
        quality=m.quality,
        cost=np.tile(m.cost.mean(axis=0), (m.n_tasks, 1)),
        latency=np.full(m.cost.shape, np.nan),
        error=m.error,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        catalog=m.catalog,
    )
    model, info = fit_cost_model(X, flat, CostModelSettings(mode="predicted"), np.random.default_rng(0))
    assert model is None and info["mode"] == "mean" and "no per-call" in info["reason"]


def test_mean_mode_is_the_previous_behaviour(splits) -> None:
    X, m = splits["train"]
    pol = LGBMPolicy(MODELS, config={**FAST, "cost_model": "mean"}).fit(X, m, seed=0)
    assert pol.cost_model is None
    assert pol.metadata["cost_model"] == {"requested": "mean", "mode": "mean", "reason": "configured"}
    Xt, _ = splits["test"]
    np.testing.assert_array_equal(pol.predict_latency(Xt), np.broadcast_to(pol.latency_mean, (Xt.shape[0], 3)))


def test_config_rejects_unknown_modes() -> None:
    with pytest.raises(ConfigError, match=r"LGBMConfig\.cost_model"):
        LGBMConfig(cost_model="tokens")
    with pytest.raises(ConfigError, match=r"LGBMConfig\.cost_model_rank"):
        LGBMConfig(cost_model_rank=0)


def test_bases_follow_the_catalog_formula(splits) -> None:
    _, m = splits["train"]
    assert detect_bases(m) == (["tokens"] * 3, ["predicted"] * 3)
    # a local model billed by measured latency x GPU rate (BFCL's unpriced open models)
    cost = m.cost.copy()
    cost[:, 1] = m.latency[:, 1] * 1.2 / 3600.0
    lat_billed = OutcomeMatrix(
        tasks=m.tasks,
        models=m.models,
        quality=m.quality,
        cost=cost,
        latency=m.latency,
        error=m.error,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        catalog=m.catalog,
    )
    assert detect_bases(lat_billed)[0] == ["tokens", "latency", "tokens"]
    # no catalog: per-call cost that varies is regressed directly
    no_cat = OutcomeMatrix(
        tasks=m.tasks,
        models=m.models,
        quality=m.quality,
        cost=m.cost,
        latency=m.latency,
        error=m.error,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
    )
    assert detect_bases(no_cat)[0] == ["direct"] * 3


def test_save_load_gives_identical_predictions(fitted: LGBMPolicy, splits, tmp_path: Path) -> None:
    X, _ = splits["test"]
    fitted.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    assert meta["format"] == 2 and meta["state"]["cost_model"]["format"] == 1
    assert (tmp_path / "p" / BOOSTER_FILE).is_file()
    loaded = RoutingPolicy.load(tmp_path / "p")
    assert isinstance(loaded, LGBMPolicy) and loaded.cost_model is not None
    for rows in (X[:1], X):  # booster path and compiled-trees path
        np.testing.assert_array_equal(loaded.predict_cost(rows), fitted.predict_cost(rows))
        np.testing.assert_array_equal(loaded.predict_latency(rows), fitted.predict_latency(rows))
        np.testing.assert_array_equal(loaded.action_distribution(rows), fitted.action_distribution(rows))
    assert loaded.metadata["cost_model"] == json.loads(json.dumps(fitted.metadata["cost_model"]))


def test_fitted_and_loaded_arrays_share_one_memory_layout(fitted: LGBMPolicy, tmp_path: Path) -> None:
    """Root cause of a one-ulp save/load difference seen on another machine.

    The fitted loadings came from ``(axes * sd)[:, keep]``, which numpy returns F-ordered, while the
    reload from JSON is C-ordered; BLAS picks its kernel (and so its summation order) by layout on
    some CPUs. Both sides are now C-contiguous, so the products are computed the same way.
    """
    cm = fitted.cost_model
    assert cm is not None
    fitted.save(tmp_path / "p")
    loaded = RoutingPolicy.load(tmp_path / "p")
    assert isinstance(loaded, LGBMPolicy) and loaded.cost_model is not None
    for model in (cm, loaded.cost_model):
        for name in ("loadings", "intercept", "offset", "coef", "const", "columns"):
            arr = getattr(model, name)
            assert arr.flags["C_CONTIGUOUS"], name
    # an F-ordered input is normalised on construction too
    f_ordered = np.asfortranarray(cm.loadings)
    rebuilt = type(cm)(**{**{f: getattr(cm, f) for f in cm.__dataclass_fields__}, "loadings": f_ordered})
    assert rebuilt.loadings.flags["C_CONTIGUOUS"]
    X = np.random.default_rng(0).normal(size=(3, cm.n_features)).astype(np.float32)
    for a, b in zip(rebuilt.predict(X[:1]), cm.predict(X[:1]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_old_and_future_artifacts(fitted: LGBMPolicy, splits, tmp_path: Path) -> None:
    X, _ = splits["test"]
    fitted.save(tmp_path / "new")
    # an artifact written before per-task costs (format 1, no cost model): loads with the means
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "new", old)
    meta = json.loads((old / "policy.json").read_text())
    meta["format"] = 1
    del meta["state"]["cost_model"]
    del meta["metadata"]["cost_model"]
    del meta["state"]["config"]["cost_model"]
    (old / "policy.json").write_text(json.dumps(meta))
    (old / BOOSTER_FILE).unlink()
    loaded = RoutingPolicy.load(old)
    assert isinstance(loaded, LGBMPolicy) and loaded.cost_model is None
    assert loaded.metadata["cost_model"]["mode"] == "mean"
    np.testing.assert_array_equal(loaded.predict_cost(X), np.broadcast_to(fitted.cost_mean, (X.shape[0], 3)))
    np.testing.assert_array_equal(loaded.predict_quality(X), fitted.predict_quality(X))
    # a newer layout fails with a clear message
    meta = json.loads((tmp_path / "new" / "policy.json").read_text())
    meta["format"] = 3
    (old / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match=r"artifact format 3, this router-rl reads \[1, 2\]"):
        RoutingPolicy.load(old)
    meta["format"], meta["state"]["cost_model"]["format"] = 2, 99
    (old / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match="cost model layout 99"):
        RoutingPolicy.load(old)
    meta["state"]["cost_model"]["format"] = 1
    (old / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match="missing cost-model booster"):
        RoutingPolicy.load(old)


@pytest.mark.parametrize("target", ["quality=0.95", "budget=0.002"])
def test_lambda_calibration_hits_its_target_with_predicted_costs(splits, target: str) -> None:
    X, m = splits["train"]
    pol = LGBMPolicy(MODELS, config=FAST).fit(X, m, seed=0)
    assert pol.cost_model is not None
    Xv, v = splits["val"]
    res = pol.calibrate(Xv, v, target)
    assert res.met, res.to_dict()
    out = pol.route_matrix(Xv, v)
    kind, val = target.split("=")
    ref = pol.reference_index
    if kind == "quality":
        assert out.quality.mean() >= float(val) * v.quality[:, ref].mean() - 1e-9
        assert out.cost.mean() < v.cost[:, ref].mean()
    else:
        assert out.cost.mean() <= float(val) + 1e-12
    assert pol.metadata["calibration"]["lam"] == pol.decision.lam


@pytest.mark.data
def test_bfcl_predicted_cost_beats_the_mean(datasets_root: Path) -> None:
    """Real data: BFCL's per-prompt tokens / latency (measured: cost nMAE 0.57x, latency 0.75x the mean's)."""
    from router_rl.features import FeatureEncoder
    from router_rl.traces.importers import DATASET_FOLDERS, import_traces

    m = import_traces("bfcl", datasets_root / DATASET_FOLDERS["bfcl"], seed=0).matrix()
    tr, te = m.split("train"), m.split("test")
    enc = FeatureEncoder(FeatureEncoder().config.restricted_to(tr.tasks.columns)).fit(tr.tasks)
    model, info = fit_cost_model(
        enc.transform(tr.tasks), tr, LGBMConfig().cost_model_settings(), np.random.default_rng(0)
    )
    assert model is not None and info["mode"] == "predicted"
    counts = {b: list(info["detected_cost_basis"].values()).count(b) for b in ("tokens", "latency", "direct", "mean")}
    assert counts == {"tokens": 49, "latency": 8, "direct": 3, "mean": 11}, counts
    cost, lat = model.predict(enc.transform(te.tasks))
    lat_fin = np.isfinite(tr.latency)
    lat_mean = np.where(lat_fin, tr.latency, 0.0).sum(axis=0) / np.maximum(lat_fin.sum(axis=0), 1)

    def nmae(pred: np.ndarray, truth: np.ndarray) -> float:
        scale = _col_mean(np.abs(np.nan_to_num(truth)), np.isfinite(truth))
        keep = np.isfinite(scale) & (scale > 0)
        return float((_mae(pred, truth)[keep] / scale[keep]).mean())

    c_pred, c_mean = nmae(cost, te.cost), nmae(np.broadcast_to(tr.cost.mean(axis=0), cost.shape), te.cost)
    l_pred, l_mean = nmae(lat, te.latency), nmae(np.broadcast_to(lat_mean, lat.shape), te.latency)
    assert c_pred < 0.75 * c_mean, (c_pred, c_mean)
    assert l_pred < 0.9 * l_mean, (l_pred, l_mean)
