"""Simulated fleet: determinism, schema validity, ground-truth sanity and that the routing problem is real."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from router_rl.traces import simulate_fleet, validate_outcomes
from router_rl.traces.simulate import AGENT_TYPES, COMPLEXITIES, SimulationConfig

MODELS = [
    "rnj-1:8b",
    "qwen2.5-coder:7b",
    "devstral-small-2:24b",
    "qwen2.5-coder:32b",
    "devstral-2:123b",
    "claude-sonnet-4.5",
    "openrouter/auto",
]


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    return simulate_fleet(6000, seed=11)


def test_deterministic_and_seed_sensitive() -> None:
    a, b, c = simulate_fleet(300, seed=2), simulate_fleet(300, seed=2), simulate_fleet(300, seed=3)
    assert a.outcomes.equals(b.outcomes) and a.ground_truth is not None and b.ground_truth is not None
    assert a.ground_truth.equals(b.ground_truth)
    assert not a.outcomes["quality"].equals(c.outcomes["quality"])


def test_schema_catalog_and_validation(fleet) -> None:  # type: ignore[no-untyped-def]
    assert fleet.catalog.models == MODELS
    assert fleet.catalog.local_models() == MODELS[:5]
    assert fleet.catalog["claude-sonnet-4.5"].usd_per_m_input == 3.0
    assert fleet.catalog["claude-sonnet-4.5"].usd_per_m_output == 15.0
    assert all(fleet.catalog[m].gpu_usd_per_hour > 0 and fleet.catalog[m].tokens_per_s for m in MODELS[:5])
    out, rep = validate_outcomes(fleet.outcomes, source="sim")
    assert rep.clean and out.height == 6000 * 7
    for col in ("prompt", "category", "agent_type", "complexity", "max_tokens", "n_messages", "privacy",
                "source", "split"):
        assert col in fleet.outcomes.columns
    m = fleet.matrix()
    assert set(m.tasks["agent_type"].unique()) == set(AGENT_TYPES)
    assert set(m.tasks["complexity"].unique()) == set(COMPLEXITIES)
    assert set(m.tasks["source"].unique()) == {"simulated"}
    assert m.has_latency and (m.cost > 0).all()  # local is not free


def test_local_cost_is_gpu_seconds_times_rate(fleet) -> None:  # type: ignore[no-untyped-def]
    m = fleet.matrix()
    ok = ~m.error
    serving = SimulationConfig().local_serving
    assert serving.mode == "batched"
    for j, name in enumerate(m.models):
        spec = fleet.catalog[name]
        expect = np.array([spec.cost(i, o, serving=serving)
                           for i, o in zip(m.input_tokens[:50, j], m.output_tokens[:50, j], strict=True)])
        np.testing.assert_allclose(m.cost[:50, j], expect, rtol=1e-9)
    assert ok.mean() > 0.98


def test_ground_truth_matches_observations(fleet) -> None:  # type: ignore[no-untyped-def]
    m = fleet.matrix()
    gt = fleet.ground_truth_matrix()
    assert gt.shape == m.quality.shape and np.isfinite(gt).all()
    np.testing.assert_allclose(m.quality.mean(0), gt.mean(0), atol=0.015)
    assert (m.quality[m.error] == 0).all()
    # cloud sonnet is the best model on average, and complexity hurts every model
    assert m.models[int(gt.mean(0).argmax())] == "claude-sonnet-4.5"
    cx = m.tasks["complexity"].to_numpy()
    means = [gt[cx == c].mean() for c in COMPLEXITIES]
    assert means == sorted(means, reverse=True)


def test_routing_problem_is_real(fleet) -> None:  # type: ignore[no-untyped-def]
    """A feature-based router reaches >= 95% of cloud quality at >= 80% local share; no single local does."""
    m = fleet.matrix()
    gt = fleet.ground_truth_matrix()
    local = np.flatnonzero(m.is_local())
    cloud = m.model_index("claude-sonnet-4.5")
    q_cloud = gt[:, cloud].mean()
    best_single_local = max(gt[:, j].mean() for j in local) / q_cloud
    assert best_single_local < 0.92
    # router that only sees (agent_type, complexity): send the worst ~20% of cells to the cloud
    keys = (m.tasks["agent_type"] + "|" + m.tasks["complexity"]).to_numpy()
    cells = {}
    for k in np.unique(keys):
        idx = keys == k
        lm = gt[idx][:, local].mean(0)
        cells[k] = (gt[idx, cloud].mean() - lm.max(), local[lm.argmax()], idx.mean())
    to_cloud: set[str] = set()
    share = 0.0
    for k in sorted(cells, key=lambda k: -cells[k][0]):
        if share + cells[k][2] <= 0.2:
            to_cloud.add(k)
            share += cells[k][2]
    choice = np.array([cloud if k in to_cloud else cells[k][1] for k in keys])
    q_router = gt[np.arange(len(keys)), choice].mean()
    local_share = float(np.isin(choice, local).mean())
    assert local_share >= 0.8
    assert q_router / q_cloud >= 0.95


def test_prompts_carry_signal_and_privacy_secrets(fleet) -> None:  # type: ignore[no-untyped-def]
    t = fleet.matrix().tasks
    priv = t.filter(pl.col("privacy"))
    assert 0.01 < priv.height / t.height < 0.06
    assert priv["prompt"].str.contains(r"AKIA[A-Z2-7]{16}|password=").all()
    assert not t.filter(~pl.col("privacy"))["prompt"].str.contains(r"AKIA|password=").any()
    lens = t.group_by("complexity").agg(pl.col("prompt").str.len_chars().mean()).sort("prompt")
    assert lens["complexity"].to_list() == list(COMPLEXITIES)  # longer prompts for harder tasks
    assert t.filter(pl.col("agent_type") == "code-reviewer")["prompt"].str.contains("@@ -").all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_tasks"):
        simulate_fleet(0)
    with pytest.raises(ValueError, match="privacy_rate"):
        SimulationConfig(privacy_rate=2.0)
