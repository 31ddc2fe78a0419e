"""Evaluation on the real RouterBench subset (third-party data under ../shared/datasets)."""

from __future__ import annotations

import pytest

from router_rl.eval import EvalConfig, default_features, evaluate_policies
from router_rl.eval.resolve import resolve_policies


@pytest.mark.data
def test_routerbench_oracle_and_baselines(datasets_root) -> None:
    from router_rl.traces.importers import import_traces

    ts = import_traces("routerbench", datasets_root / "routerbench-subset-via-routerdc", drop_invalid=True)
    m = ts.matrix()
    train, val, test = m.split("train"), m.split("val"), m.split("test")
    feats = default_features(train)
    pols = resolve_policies(["cheapest", "random"], train, feats, seed=0)
    res = evaluate_policies(train, val, test, pols, features=feats, config=EvalConfig(n_bootstrap=100))
    # RouterBench: GPT-4 is the best single model; the hindsight oracle beats it at a fraction of its cost
    assert res.reference_model == "gpt-4-1106-preview"
    assert res.oracle.quality_ratio > 1.0
    assert res.oracle.cost_share < 0.2
    assert res.oracle_frontier_metrics["apgr"] > 1.0  # the oracle recovers more than the whole weak->strong gap
    cheap = res.policies["cheapest"]
    assert cheap.metrics.cost_share < 0.1 and cheap.metrics.quality_ratio < 0.9
    rnd = res.policies["random"].metrics
    assert cheap.metrics.mean_quality < rnd.mean_quality < res.oracle.mean_quality
    assert sum(g.n for g in res.policies["random"].by_group["category"].values()) == test.n_tasks
