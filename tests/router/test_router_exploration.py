"""Exploration in the live router: the logged distribution is exactly the sampled one, masks hold.

Real router over real replay backends on 127.0.0.1; real policy artifact (RandomPolicy + a fitted
FeatureEncoder) for the learned strategy.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from _router_helpers import (
    API_TOKEN,
    COMPLEX_PROMPT,
    HARD_PROMPT,
    SENSITIVE_PROMPT,
    SIMPLE_PROMPT,
    by_model,
    router_config,
    save_random_policy,
)

from router_rl.policies.exploration import ExplorationConfig, explore
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.request import RouteInput
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
MODELS = ("small-local", "big-local", "cloud-large")
WEIGHTS = (0.5, 0.3, 0.2)
EXPLORATION = {
    "default": {"epsilon": 0.3},
    "strategies": {"learned": {"epsilon": 0.1, "temperature": 2.0}},
    "agent_types": {"explorer": {"epsilon": 0.6}},
}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return save_random_policy(tmp_path / "policy", MODELS, list(WEIGHTS))


def _router(backends: Backends, log: Path, **overrides: Any) -> HybridRouter:
    local, cloud = backends
    overrides.setdefault("logging", {"decision_log_dir": str(log), "flush_interval_s": 60})
    return HybridRouter(parse_config(router_config(local.base_url, cloud.base_url, **overrides)))


def _inp(prompt: str, i: int, **kw: Any) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": prompt}], request_id=f"req-{i}", max_tokens=8, **kw)


async def _route_all(router: HybridRouter, inputs: list[RouteInput], batch: int = 64) -> None:
    try:
        for k in range(0, len(inputs), batch):
            await asyncio.gather(*(router.route(x) for x in inputs[k:k + batch]))
    finally:
        await router.aclose()


def _expected(base: tuple[float, ...], cfg: dict[str, float], allowed: tuple[bool, ...] = (True,) * 3) -> list[float]:
    return explore(np.asarray(base), ExplorationConfig(**cfg), np.asarray(allowed)).tolist()


def test_sampled_frequencies_match_the_logged_propensities(
    backends: Backends, tmp_path: Path, policy_dir: Path
) -> None:
    """3,000 requests over 5 distinct exploration distributions (rules one-hot + epsilon, learned
    tempered + epsilon, an agent-type override): per distribution and model, the chosen count lies
    within 4.5 binomial standard deviations of n * logged probability, and every logged distribution
    is exactly explore(base policy, the settings of its precedence level)."""
    router = _router(backends, tmp_path / "log", exploration=EXPLORATION, learned={"policy_dir": str(policy_dir)},
                     seed=7)
    prompts = (SIMPLE_PROMPT, COMPLEX_PROMPT, HARD_PROMPT)
    inputs = []
    for i in range(3000):
        if i % 3 == 0:
            inputs.append(_inp(prompts[i % 2], i, model="router-rl/balanced", agent_type="gen"))
        elif i % 3 == 1:
            inputs.append(_inp(prompts[(i // 3) % 3], i, model="router-rl/learned", agent_type="gen"))
        else:
            inputs.append(_inp(COMPLEX_PROMPT, i, model="router-rl/balanced", agent_type="explorer"))
    asyncio.run(_route_all(router, inputs))
    df = read_decision_log(tmp_path / "log")
    assert df.height == 3000 and df["error"].null_count() == 3000

    rule = {"epsilon": 0.3}
    expected = {  # (strategy, agent type, complexity) -> exact distribution
        ("balanced", "gen", "simple"): _expected((1.0, 0.0, 0.0), rule),
        ("balanced", "gen", "complex"): _expected((0.0, 1.0, 0.0), rule),
        ("balanced", "explorer", "complex"): _expected((0.0, 1.0, 0.0), {"epsilon": 0.6}),
    }
    learned = _expected(WEIGHTS, {"epsilon": 0.1, "temperature": 2.0})
    assert learned == pytest.approx([0.4072, 0.3230, 0.2698], abs=1e-4)  # flatter than 0.5 / 0.3 / 0.2
    groups: dict[tuple[float, ...], list[str]] = {}
    for row in df.iter_rows(named=True):
        key = (row["strategy"], row["agent_type"], row["complexity"])
        want = learned if row["strategy"] == "learned" else expected[key]
        assert row["action_probs"] == pytest.approx(want, abs=1e-12), key
        assert row["propensity"] == row["action_probs"][MODELS.index(row["chosen_model"])]
        settings = {"epsilon": 0.1, "temperature": 2.0} if row["strategy"] == "learned" else (
            {"epsilon": 0.6} if row["agent_type"] == "explorer" else rule)
        assert json.loads(row["exploration"]) == settings
        top = MODELS[int(np.argmax(WEIGHTS))] if row["strategy"] == "learned" else MODELS[int(np.argmax(want))]
        assert row["explored"] is (row["chosen_model"] != top)
        groups.setdefault(tuple(row["action_probs"]), []).append(row["chosen_model"])
    assert len(groups) == 4
    for probs, chosen in groups.items():
        n, counts = len(chosen), Counter(chosen)
        for m, p in zip(MODELS, probs, strict=True):
            sd = math.sqrt(n * p * (1 - p))
            assert abs(counts[m] - n * p) <= 4.5 * sd + 1e-9, (probs, m, counts[m], n * p)
    # the explored share is what the distributions imply (rules: epsilon * 2/3 off the tier model)
    bal = df.filter((pl.col("strategy") == "balanced") & (pl.col("agent_type") == "gen"))
    assert bal["explored"].mean() == pytest.approx(0.2, abs=4.5 * math.sqrt(0.2 * 0.8 / bal.height))


def test_exploration_never_sends_a_sensitive_or_budget_local_request_to_the_cloud(
    backends: Backends, tmp_path: Path
) -> None:
    _local, cloud = backends
    router = _router(backends, tmp_path / "a", exploration={"default": {"epsilon": 0.5}})
    asyncio.run(_route_all(router, [_inp(SENSITIVE_PROMPT, i, model="router-rl/quality_optimized")
                                    for i in range(200)]))
    exhausted = _router(backends, tmp_path / "b", exploration={"default": {"epsilon": 0.5}},
                        budgets={"per_agent": {"daily_usd": 0.0}, "on_exhausted": "local_only"})
    asyncio.run(_route_all(exhausted, [_inp(HARD_PROMPT, i, model="router-rl/quality_optimized", agent_id="qe-1")
                                       for i in range(200)]))
    assert by_model(cloud) == {}
    for log in ("a", "b"):
        df = read_decision_log(tmp_path / log)
        assert df.height == 200 and df["error"].null_count() == 200
        assert set(df["chosen_model"]) == {"small-local", "big-local"}  # explored among the local models only
        assert set(df["served_model"]) <= {"small-local", "big-local"}
        assert all(p[2] == 0.0 for p in df["action_probs"].to_list())
        # quality_optimized picks big-local; epsilon 0.5 over the 2 allowed models: 0.75 / 0.25
        assert df["action_probs"].to_list()[0] == pytest.approx([0.25, 0.75, 0.0])
        assert 20 < int(df["explored"].sum()) < 80


def test_explicit_models_and_the_kill_switch_do_not_explore_and_open_breakers_are_masked(
    backends: Backends, tmp_path: Path
) -> None:
    router = _router(backends, tmp_path / "log", exploration={"default": {"epsilon": 0.5}})

    async def go() -> None:
        try:
            await router.route(_inp(SIMPLE_PROMPT, 0, model="big-local"))
            router.set_kill_switch(True, "test")
            await router.route(_inp(SIMPLE_PROMPT, 1))
            router.set_kill_switch(False)
            for _ in range(router.config.breaker.consecutive_failures):  # open the cloud breaker
                router.breakers["cloud"].allow()
                router.breakers["cloud"].record_failure()
            await router.route(_inp(SIMPLE_PROMPT, 2))
        finally:
            await router.aclose()

    asyncio.run(go())
    rows = {r["request_id"]: r for r in read_decision_log(tmp_path / "log").iter_rows(named=True)}
    assert rows["req-0"]["action_probs"] == [0.0, 1.0, 0.0] and rows["req-0"]["exploration"] is None
    assert rows["req-0"]["explored"] is False
    assert rows["req-1"]["exploration"] is None and rows["req-1"]["action_probs"] == [0.0, 0.0, 1.0]
    assert json.loads(rows["req-2"]["breaker_states"])["cloud"] == "open"
    assert rows["req-2"]["action_probs"] == pytest.approx([0.75, 0.25, 0.0])  # cloud masked before epsilon


def test_the_exploration_share_is_exported_on_metrics(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url, exploration={"default": {"epsilon": 0.6}},
                                     logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60}))
    router = HybridRouter.from_config(cfg)
    with RouterServer(build_server_app(router)) as srv:
        for i in range(60):
            r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=30,
                           headers={"authorization": f"Bearer {API_TOKEN}", "x-request-id": f"m-{i}"},
                           json={"model": "router-rl/cost_optimized", "max_tokens": 8,
                                 "messages": [{"role": "user", "content": SIMPLE_PROMPT}]})
            assert r.status_code == 200
        text = httpx.get(srv.base_url + "/metrics", timeout=10).text
    n_explored = int(read_decision_log(tmp_path / "log")["explored"].sum())
    assert 10 < n_explored < 50  # 0.6 * 2/3 = 0.4 of 60
    got = re.search(r'router_rl_explored_decisions_total\{strategy="cost_optimized"\} ([0-9.]+)', text)
    assert got is not None and float(got.group(1)) == n_explored
    assert 'router_rl_exploring_decisions_total{strategy="cost_optimized"} 60.0' in text
