"""evaluate_policies, the evaluate/report CLI end to end on a small simulated fleet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.eval import EvalConfig, default_features, evaluate_policies
from router_rl.eval.resolve import resolve_policies
from router_rl.traces import simulate_fleet

POLICY_FIELDS = {
    "name",
    "kind",
    "version",
    "metrics",
    "intervals",
    "by_group",
    "frontier",
    "frontier_metrics",
    "operating_point",
    "independence",
    "calibration",
    "deployed",
}
METRIC_FIELDS = {
    "n",
    "mean_quality",
    "mean_cost",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "latency_known_share",
    "local_share",
    "cloud_share",
    "error_share",
    "fallback_share",
    "mean_calls",
    "reference_quality",
    "reference_cost",
    "quality_ratio",
    "cost_share",
    "cost_saving",
    "oracle_quality",
    "oracle_gap",
}


@pytest.fixture(scope="module")
def fleet():
    ts = simulate_fleet(300, seed=3)
    m = ts.matrix()
    return ts, m.split("train"), m.split("val"), m.split("test")


@pytest.fixture(scope="module")
def traces_file(tmp_path_factory, fleet) -> Path:
    p = tmp_path_factory.mktemp("traces") / "fleet.parquet"
    fleet[0].save(p)
    return p


def test_evaluate_policies_numbers_are_consistent(fleet) -> None:
    _, train, val, test = fleet
    feats = default_features(train)
    pols = resolve_policies(["single:model=claude-sonnet-4.5", "cheapest", "random"], train, feats, seed=0)
    res = evaluate_policies(train, val, test, pols, features=feats, config=EvalConfig(n_bootstrap=100))
    assert res.reference_model == train.best_single_model()
    ref = test.model_index(res.reference_model)
    single = res.policies["single:model=claude-sonnet-4.5"]
    # always calling the reference model: ratio 1, share 1, saving 0, same numbers as the single-model row
    assert single.metrics.quality_ratio == pytest.approx(1.0)
    assert single.metrics.cost_share == pytest.approx(1.0)
    assert single.metrics.mean_quality == pytest.approx(test.quality[:, ref].mean())
    assert single.metrics.local_share == 0.0
    assert res.single_models[res.reference_model].mean_cost == pytest.approx(single.metrics.mean_cost)
    cheap = res.policies["cheapest"]
    assert cheap.metrics.local_share == 1.0
    assert cheap.independence.highest_passed == "phase4" or cheap.metrics.quality_ratio < 0.9
    # the oracle is an upper bound on quality; oracle gap = oracle - policy
    for pe in res.policies.values():
        assert pe.metrics.mean_quality <= res.oracle.mean_quality + 1e-12
        assert pe.metrics.oracle_gap == pytest.approx(res.oracle.mean_quality - pe.metrics.mean_quality)
        iv = pe.intervals["mean_quality"]
        assert iv.lower <= pe.metrics.mean_quality <= iv.upper
    # oracle frontier is non-decreasing in cost as λ falls, and its λ=0 point is the oracle
    assert res.oracle_frontier[0].mean_quality == pytest.approx(res.oracle.mean_quality)
    # category breakdown covers every task exactly once
    cats = single.by_group["category"]
    assert sum(m.n for m in cats.values()) == test.n_tasks
    # reproducible
    res2 = evaluate_policies(train, val, test, pols, features=feats, config=EvalConfig(n_bootstrap=100))
    assert res2.to_dict() == res.to_dict()


@pytest.mark.slow
def test_lgbm_frontier_and_operating_point(fleet) -> None:
    _, train, val, test = fleet
    feats = default_features(train)
    pols = resolve_policies(["lgbm"], train, feats, seed=0)
    res = evaluate_policies(train, val, test, pols, features=feats, config=EvalConfig(n_bootstrap=50))
    pe = res.policies["lgbm"]
    assert len(pe.frontier) == len(EvalConfig().lambdas)
    lam0 = pe.frontier[0]
    lam_max = pe.frontier[-1]
    assert lam_max.mean_cost < lam0.mean_cost  # a large λ buys cheaper routing
    fm = pe.frontier_metrics
    assert 0 < fm["aiq"] <= 1 and fm["apgr"] is not None
    op = pe.operating_point
    assert op is not None and op["lam"] in EvalConfig().lambdas
    assert op["test_cost_share"] == pytest.approx(pe.frontier[EvalConfig().lambdas.index(op["lam"])].cost_share)
    assert pe.calibration is not None and 0 <= pe.calibration.ece <= 1
    assert sum(pe.calibration.counts) == test.n_tasks


def test_cli_evaluate_end_to_end_json_schema(traces_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--traces",
            str(traces_file),
            "--policies",
            "cheapest",
            "random",
            "--json",
            str(out),
            "--n-bootstrap",
            "50",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Offline evaluation on test" in r.output
    d = json.loads(out.read_text())
    assert d["schema_version"] == 1
    assert set(d) >= {
        "split",
        "n_tasks",
        "models",
        "reference_model",
        "weak_model",
        "single_models",
        "oracle",
        "oracle_frontier",
        "oracle_frontier_metrics",
        "policies",
        "config",
    }
    assert list(d["policies"]) == ["cheapest", "random"]
    for pe in d["policies"].values():
        assert set(pe) == POLICY_FIELDS
        assert set(pe["metrics"]) == METRIC_FIELDS
        assert set(pe["intervals"]) >= {"mean_quality", "mean_cost", "quality_ratio", "cost_share", "local_share"}
        assert set(pe["intervals"]["cost_share"]) == {"value", "lower", "upper"}
        assert set(pe["frontier_metrics"]) == {"aiq", "apgr", "cpt50", "cpt80", "cpt95", "cost_share_at_quality"}
        assert [p["phase"] for p in pe["independence"]["phases"]] == ["phase1", "phase2", "phase4"]
    assert np.isclose(d["policies"]["cheapest"]["metrics"]["local_share"], 1.0)


def test_cli_rejects_unknown_policy_and_missing_file(traces_file: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "400"})  # no wrapping of long paths in the error box
    r = runner.invoke(app, ["evaluate", "-t", str(traces_file), "-p", "no-such-policy"])
    assert r.exit_code != 0
    assert "no-such-policy" in r.output and "known" in r.output
    r = runner.invoke(app, ["evaluate", "-t", str(tmp_path / "missing.parquet"), "-p", "random"])
    assert r.exit_code != 0 and "missing.parquet" in r.output


def test_cli_report_writes_files(traces_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = CliRunner().invoke(
        app, ["report", "-t", str(traces_file), "-p", "cheapest", "-p", "random", "-o", str(out), "--n-bootstrap", "20"]
    )
    assert r.exit_code == 0, r.output
    for name in ("report.md", "report.html", "evaluation.json", "frontier.png", "by_category.png"):
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, name
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| cheapest |" in md and "Independence gates" in md and "![frontier.png](frontier.png)" in md


def test_cli_evaluates_a_saved_artifact(fleet, traces_file: Path, tmp_path: Path) -> None:
    from router_rl.policies.base import make_policy

    _, train, _, _ = fleet
    feats = default_features(train)
    pol = make_policy("single", train.models, model="claude-sonnet-4.5")
    pol.fit(feats(pol, train), train, seed=0)
    art = pol.save(tmp_path / "my-policy")
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(
        app, ["evaluate", "-t", str(traces_file), "-p", str(art), "--json", str(out), "--n-bootstrap", "20"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    pe = d["policies"]["my-policy"]
    assert pe["kind"] == "single" and pe["metrics"]["quality_ratio"] == pytest.approx(1.0)


def test_lambda_sweep_predicts_once_and_matches_fresh_predictions(fleet) -> None:
    """The frontier sweep reuses one quality prediction per split; the points are unchanged."""
    _, train, val, test = fleet
    feats = default_features(train)
    (pol,) = resolve_policies(["lgbm"], train, feats, seed=0).values()
    calls = {"n": 0}
    inner = pol._predict_quality

    def counting(X: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        return inner(X)

    pol._predict_quality = counting  # type: ignore[method-assign]
    cfg = EvalConfig(n_bootstrap=20)
    res = evaluate_policies(train, val, test, {"lgbm": pol}, features=feats, config=cfg)
    pts = res.policies["lgbm"].frontier
    assert len(pts) == len(cfg.lambdas) == 50
    # one prediction for test (headline + sweep), one for val, one for the calibration curve
    assert calls["n"] == 3
    X = feats(pol, test)
    for p in pts[::7]:
        pol.decision, orig = pol.decision.with_(lam=p.lam), pol.decision
        try:
            out = pol.route_matrix(X, test, rng=np.random.default_rng([cfg.seed, 7]))
        finally:
            pol.decision = orig
        assert p.mean_cost == pytest.approx(out.cost.mean())
        assert p.mean_quality == pytest.approx(out.quality.mean())
    assert pol._quality_cache is None  # the cache does not outlive the evaluation


def test_frontier_metrics_are_undefined_when_every_model_costs_the_same(fleet) -> None:
    """No cost axis (routerdc: no prices) -> AIQ / APGR / cost-at-quality are n/a, not 0."""
    import dataclasses

    _, *splits = fleet
    flat = [dataclasses.replace(s, cost=np.full_like(s.cost, 0.01)) for s in splits]
    feats = default_features(flat[0])
    names = ["single:model=claude-sonnet-4.5", "random"]
    res = evaluate_policies(*flat, resolve_policies(names, flat[0], feats, seed=0), features=feats,
                            config=EvalConfig(n_bootstrap=20))
    assert res.oracle_frontier_metrics == {}
    assert all(pe.frontier_metrics == {} for pe in res.policies.values())
    assert res.policies["random"].metrics.cost_share == pytest.approx(1.0)
    # the same policies with real prices do have a cost axis
    res = evaluate_policies(*splits, resolve_policies(names, splits[0], feats, seed=0), features=feats,
                            config=EvalConfig(n_bootstrap=20))
    assert res.policies["random"].frontier_metrics["aiq"] > 0
