"""Simulated fleet: determinism, schema validity, ground-truth sanity and that the routing problem is real."""

from __future__ import annotations

import hashlib

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


#: sha256 of the 300 prompts of ``simulate_fleet(300, seed=0)`` joined by NUL, made by the
#: simulator before the hardness cues existed (commit 4820b2c): visibility 0 must reproduce them.
CUE_FREE_PROMPTS_SHA256 = "1bd3312bc509f7b57315c96d54d2e00b4914a375dcc953aaf3e288f11853d498"


def _prompts(ts) -> list[str]:  # type: ignore[no-untyped-def]
    return ts.matrix().tasks["prompt"].to_list()  # type: ignore[no-any-return]


def test_zero_visibility_is_the_cue_free_fleet_bit_for_bit() -> None:
    ts = simulate_fleet(300, seed=0, config=SimulationConfig(hardness_visibility=0.0))
    assert hashlib.sha256("\x00".join(_prompts(ts)).encode()).hexdigest() == CUE_FREE_PROMPTS_SHA256
    default = simulate_fleet(300, seed=0)  # the built-in fleet's default is the cue-free fleet
    assert hashlib.sha256("\x00".join(_prompts(default)).encode()).hexdigest() == CUE_FREE_PROMPTS_SHA256
    cued = simulate_fleet(300, seed=0, config=SimulationConfig(hardness_visibility=0.6))  # cues: another hash
    assert hashlib.sha256("\x00".join(_prompts(cued)).encode()).hexdigest() != CUE_FREE_PROMPTS_SHA256


def test_visibility_moves_only_prompts_and_token_driven_columns() -> None:
    a = simulate_fleet(1500, seed=5, config=SimulationConfig(hardness_visibility=0.0))
    b = simulate_fleet(1500, seed=5, config=SimulationConfig(hardness_visibility=0.6))
    assert a.ground_truth is not None and b.ground_truth is not None
    assert a.ground_truth.equals(b.ground_truth)  # the truth and every quality draw stay put
    moved = {"prompt", "input_tokens", "cost_usd", "latency_s"}
    same = [c for c in a.outcomes.columns if c not in moved]
    assert a.outcomes.select(same).equals(b.outcomes.select(same))
    pa, pb = np.array(_prompts(a)), np.array(_prompts(b))
    assert (pa != pb).mean() > 0.9
    ia, ib = a.matrix().input_tokens, b.matrix().input_tokens
    assert (ia != ib).any(axis=1).mean() > 0.9
    cloud = a.matrix().model_index("claude-sonnet-4.5")
    ca, cb = a.matrix().cost[:, cloud], b.matrix().cost[:, cloud]
    assert (ca != cb).mean() > 0.9  # tokens x list price moves with the prompt


def _within_cell(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    out = x.astype(float).copy()
    for k in np.unique(keys):
        out[keys == k] -= out[keys == k].mean()
    return out


@pytest.mark.parametrize(("rho", "lo", "hi"), [(0.0, -0.08, 0.08), (0.6, 0.3, 0.55), (0.9, 0.5, 0.75)])
def test_prompt_cues_track_hardness_within_a_cell(rho: float, lo: float, hi: float) -> None:
    """Within an (agent, complexity) cell, prompt length follows the hidden hardness as rho says."""
    ts = simulate_fleet(3000, seed=11, config=SimulationConfig(hardness_visibility=rho))
    m = ts.matrix()
    assert ts.ground_truth is not None
    sonnet = ts.ground_truth.filter(pl.col("model") == "claude-sonnet-4.5")
    assert sonnet["task_id"].to_list() == m.tasks["task_id"].to_list()
    p = sonnet["p_success"].to_numpy()
    keys = (m.tasks["agent_type"] + "|" + m.tasks["complexity"]).to_numpy()
    h = _within_cell(np.log(p / (1 - p)), keys)  # hardness + that model's cell noise
    chars = _within_cell(m.tasks["prompt"].str.len_chars().to_numpy(), keys)
    assert lo < np.corrcoef(h, chars)[0, 1] < hi
    legacy = m.tasks["prompt"].str.contains("legacy module without tests").to_numpy()
    easy = m.tasks["prompt"].str.contains("pure function without I/O").to_numpy()
    q1, q3 = np.quantile(h, [0.25, 0.75])
    if rho == 0.0:
        assert not legacy.any() and not easy.any()
    else:  # hard-looking sentences on hard tasks, easy-looking ones on easy tasks
        assert legacy[h > q3].mean() > 2 * legacy[h < q1].mean() > 0
        assert easy[h < q1].mean() > 2 * easy[h > q3].mean() > 0


def test_complexity_heuristic_does_not_leak_the_declared_level() -> None:
    from router_rl.features.complexity import complexity_score

    for rho, top in ((0.0, 0.8), (0.6, 0.6)):
        t = simulate_fleet(1500, seed=11, config=SimulationConfig(hardness_visibility=rho)).matrix().tasks
        level = np.array([complexity_score(p, max_tokens=int(mt), n_messages=int(nm))[1].rank
                          for p, mt, nm in zip(t["prompt"], t["max_tokens"], t["n_messages"], strict=True)])
        cx = np.array([COMPLEXITIES.index(c) for c in t["complexity"]])
        agree = float((level == cx).mean())
        assert 0.3 < agree < top  # informative, never the label itself
        assert np.corrcoef(level, cx)[0, 1] > 0.6


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_tasks"):
        simulate_fleet(0)
    with pytest.raises(ValueError, match="privacy_rate"):
        SimulationConfig(privacy_rate=2.0)
    with pytest.raises(ValueError, match="hardness_visibility"):
        SimulationConfig(hardness_visibility=1.5)
