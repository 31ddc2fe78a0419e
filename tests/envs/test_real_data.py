"""Shipped real-data specs: both env checkers clean, reward arithmetic vs the raw files."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import polars as pl
import pytest
from envs_helpers import checks_clean

import router_rl.envs as renvs
from router_rl.envs.spec import list_spec_files, load_spec

REAL = sorted(f.stem for f in list_spec_files() if load_spec(f).data.source == "importer")


def test_every_real_dataset_has_a_spec() -> None:
    assert {"routerbench-bandit", "llmrouter-bandit", "routerdc-bandit", "bfcl-bandit", "bfcl-budgeted"} <= set(REAL)


@pytest.mark.data
@pytest.mark.slow  # routerdc imports 20,600 prompts (several seconds on a busy core)
@pytest.mark.parametrize("name", REAL)
def test_real_spec_passes_both_checkers_with_zero_warnings(name: str, datasets_root: Path) -> None:
    env = gym.make(f"router_rl/{name}-v0")
    assert checks_clean(env) == []
    test_env = renvs.make(name, split="test")
    assert not set(env.unwrapped.tables.task_ids) & set(test_env.tables.task_ids)
    assert test_env.observation_space == env.observation_space


@pytest.mark.data
def test_routerbench_reward_matches_raw_csv_rows(datasets_root: Path) -> None:
    env = renvs.make("routerbench-bandit", horizon=None, episode="sequential")
    tb = env.tables
    raw = pl.read_csv(datasets_root / "routerbench-subset-via-routerdc/routerbench_zs/mbpp_train.csv")
    data = renvs.load_env_data(load_spec("routerbench-bandit"))
    # cost_ref "auto": mean train cost of the most expensive model
    assert tb.reward_spec.cost_ref_usd == pytest.approx(data.train.cost.mean(axis=0).max())
    ref = float(tb.reward_spec.cost_ref_usd)  # type: ignore[arg-type]
    checked = 0
    for row in raw.head(40).iter_rows(named=True):
        if row["sample_id"] not in tb.task_ids:
            continue  # in the val split
        i = tb.task_ids.index(row["sample_id"])
        for model in ("gpt-4-1106-preview", "mistralai/mistral-7b-chat"):
            j = tb.models.index(model)
            q, c = float(row[model]), float(row[f"{model}|total_cost"])
            assert tb.reward[i, j] == pytest.approx(q - 0.5 * c / ref, abs=1e-12)
            checked += 1
    assert checked >= 40


@pytest.mark.data
def test_bfcl_reward_matches_raw_rows_with_latency_and_price(datasets_root: Path) -> None:
    env = renvs.make("bfcl-bandit", horizon=None, episode="sequential")
    tb = env.tables
    root = datasets_root / "bfcl-v2-2024-08-11"
    prices = pl.read_csv(root / "prices_from_bfcl_9df5c34.csv")
    rows = pl.read_csv(root / "per_prompt_long.csv").filter(pl.col("model") == "gpt-4o-2024-08-06-FC")
    price = prices.filter(pl.col("model") == "gpt-4o-2024-08-06-FC").row(0, named=True)
    j = tb.models.index("gpt-4o-2024-08-06-FC")
    ref = float(tb.reward_spec.cost_ref_usd)  # type: ignore[arg-type]
    idx = {t: k for k, t in enumerate(tb.task_ids)}
    checked = 0
    for row in rows.head(60).iter_rows(named=True):
        if row["id"] not in idx:
            continue
        i = idx[row["id"]]
        cost = (row["input_tokens"] * price["input_usd_per_million_tokens"]
                + row["output_tokens"] * price["output_usd_per_million_tokens"]) / 1e6
        expected = row["correct"] - 0.3 * cost / ref - 0.05 * row["latency_s"] / 10.0
        assert tb.reward[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        checked += 1
    assert checked >= 30


@pytest.mark.data
def test_bfcl_budgeted_uses_llmperf_fitted_outages(datasets_root: Path) -> None:
    env = renvs.make("bfcl-budgeted")
    assert isinstance(env, renvs.BudgetedRouting)
    assert env.providers == ("anthropic", "google", "openai")
    fitted = renvs.fit_llmperf_rates(datasets_root / "llmperf-provider-latency")
    assert env.outage.p_fail[0] == pytest.approx(fitted["bedrock"].p_fail)
    assert env.outage.p_recover[2] == pytest.approx(fitted["anyscale"].p_recover)
    # bedrock had many error runs: anthropic is down a good part of the day
    env.reset(seed=0)
    assert 0.05 < (~env._up[:, 0]).mean() < 0.95
    assert np.isfinite(env.tables.latency).all()
