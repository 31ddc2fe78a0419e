"""The hybrid router against real replay backends on 127.0.0.1 (no mocked HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _router_helpers import (
    COMPLEX_PROMPT,
    HARD_PROMPT,
    SENSITIVE_PROMPT,
    SIMPLE_PROMPT,
    by_model,
    router_config,
)

from router_rl.replay.server import ReplayBackendServer
from router_rl.router.breaker import BreakerState
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.errors import BudgetExhaustedError, NoProviderAvailableError, UnknownModelError
from router_rl.router.request import RouteInput, RouteResult
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]


class FakeClock:
    def __init__(self) -> None:
        self.t = 10_000.0

    def __call__(self) -> float:
        return self.t


def _router(backends: Backends, tmp_path: Path | None = None, **overrides: Any) -> HybridRouter:
    local, cloud = backends
    if tmp_path is not None:
        overrides.setdefault("logging", {"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60})
    return HybridRouter(parse_config(router_config(local.base_url, cloud.base_url, **overrides)), **{})


def _inp(prompt: str, **kw: Any) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": prompt}], **kw)


async def _route(r: HybridRouter, prompt: str, **kw: Any) -> RouteResult:
    return await r.route(_inp(prompt, **kw))


def test_rule_tiers_route_by_complexity(backends: Backends, tmp_path: Path) -> None:
    async def go() -> list[str]:
        r = _router(backends, tmp_path)
        try:
            prompts = (SIMPLE_PROMPT, COMPLEX_PROMPT, HARD_PROMPT)
            out = [(await _route(r, p, agent_id="a")).served_model for p in prompts]
        finally:
            await r.aclose()
        return out

    assert asyncio.run(go()) == ["small-local", "big-local", "cloud-large"]
    local, cloud = backends
    assert by_model(local) == {"small-local": 1, "big-local": 1}
    assert by_model(cloud) == {"cloud-large": 1}
    df = read_decision_log(tmp_path / "log")
    assert df.height == 3
    assert df["strategy"].to_list() == ["balanced"] * 3
    assert df["complexity"].to_list() == ["simple", "complex", "very_complex"]
    assert df["propensity"].to_list() == [1.0, 1.0, 1.0]
    assert (df["cost_usd"] > 0).all()  # local GPU time is not free, cloud tokens are priced


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "http_5xx"}, "http_5xx"),
        ({"kind": "http_429", "retry_after_s": 0}, "http_429"),
        ({"kind": "reset"}, "connection"),
        ({"kind": "malformed"}, "malformed"),
        ({"kind": "http_4xx", "code": "context_length_exceeded"}, "context_too_long"),
        ({"kind": "timeout", "delay_s": 3.0}, "timeout"),
    ],
)
def test_fallback_on_each_injected_fault(
    backends: Backends, tmp_path: Path, fault: dict[str, Any], reason: str
) -> None:
    local, cloud = backends
    local.backend.faults.replace([{**fault, "model": "small-local"}])

    async def go() -> RouteResult:
        r = _router(backends, tmp_path, fallback={"latency_threshold_s": 0.5})
        try:
            return await _route(r, SIMPLE_PROMPT, request_id="req-1")
        finally:
            await r.aclose()

    res = asyncio.run(go())
    assert res.decision.chosen == "small-local"
    assert res.served_model == "big-local"
    assert res.fallback_used and res.fallback_reason == reason
    assert by_model(local) == {"small-local": 1, "big-local": 1}
    assert by_model(cloud) == {}
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["request_id"] == "req-1"
    assert (row["chosen_model"], row["served_model"], row["fallback_used"], row["fallback_reason"]) == (
        "small-local", "big-local", True, reason)
    assert row["error"] is None


def test_breaker_opens_then_emergency_cloud_then_half_open_probe_closes(
    backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local, cloud = backends
    local.backend.faults.replace([{"kind": "http_5xx", "provider": "local"}])
    clock = FakeClock()

    async def go() -> None:
        cfg = parse_config(router_config(local.base_url, cloud.base_url,
                                         logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60}))
        r = HybridRouter(cfg, clock=clock)
        try:
            # request 1: both local models fail (2 consecutive local failures < 3): no emergency, 503
            with pytest.raises(NoProviderAvailableError, match="small-local:http_5xx, big-local:http_5xx"):
                await _route(r, SIMPLE_PROMPT)
            assert r.breakers["local"].state == BreakerState.CLOSED
            assert by_model(cloud) == {}
            # request 2: third failure opens the breaker; big-local skipped; trigger fires -> cloud
            with caplog.at_level(logging.WARNING, logger="router_rl.router"):
                res = await _route(r, SIMPLE_PROMPT)
            assert r.breakers["local"].state == BreakerState.OPEN
            assert res.served_model == "cloud-large"
            assert res.fallback_reason == "emergency_cloud:consecutive_local_failures"
            assert any("ALERT emergency cloud fallback" in m for m in caplog.messages)
            # request 3: local breaker open -> no local call at all
            n_local = local.backend.stats()["total"]
            res = await _route(r, SIMPLE_PROMPT)
            assert res.served_model == "cloud-large"
            assert local.backend.stats()["total"] == n_local
            # recovery: after the reset timeout one probe goes to local and closes the breaker
            local.backend.faults.clear()
            clock.t += 30.0
            assert r.breakers["local"].state == BreakerState.HALF_OPEN
            res = await _route(r, SIMPLE_PROMPT)
            assert res.served_model == "small-local" and not res.fallback_used
            assert r.breakers["local"].state == BreakerState.CLOSED
            text = r.metrics.render().decode()
            assert 'router_rl_emergency_cloud_total{reason="consecutive_local_failures"} 2.0' in text
            assert 'router_rl_breaker_state{provider="local"} 0.0' in text
        finally:
            await r.aclose()

    asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    assert df.height == 4
    assert df["error"].to_list() == ["no_provider_available", None, None, None]
    assert json.loads(df["breaker_states"][2]) == {"cloud": "closed", "local": "open"}


def test_latency_trigger_sends_to_cloud_after_local_timeout(backends: Backends) -> None:
    local, _cloud = backends
    local.backend.faults.replace([{"kind": "timeout", "delay_s": 3.0, "provider": "local"}])

    async def go() -> RouteResult:
        r = _router(backends, fallback={"latency_threshold_s": 0.3})
        try:
            return await _route(r, SIMPLE_PROMPT)
        finally:
            await r.aclose()

    res = asyncio.run(go())
    assert res.served_model == "cloud-large"
    # only 2 local failures so far (< 3): the latency trigger is what fired
    assert res.fallback_reason == "emergency_cloud:latency"


def test_sensitive_requests_never_reach_cloud(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    hard_and_secret = HARD_PROMPT + "\n" + SENSITIVE_PROMPT

    async def go() -> list[Any]:
        r = _router(backends, tmp_path)
        out: list[Any] = []
        try:
            # very complex (would be cloud), explicit cloud model, cloud strategy: all stay local
            out.append((await _route(r, hard_and_secret)).served_model)
            out.append((await _route(r, SENSITIVE_PROMPT, model="cloud-large")).served_model)
            out.append((await _route(r, hard_and_secret, model="router-rl/quality_optimized")).served_model)
            # every local model failing: the emergency cloud fallback is NOT used for sensitive requests
            local.backend.faults.replace([{"kind": "http_5xx", "provider": "local"}])
            for _ in range(4):
                with pytest.raises(NoProviderAvailableError, match="sensitive request: local models only"):
                    await _route(r, SENSITIVE_PROMPT)
            # a non-sensitive request in the same state does use the emergency fallback
            out.append((await _route(r, SIMPLE_PROMPT)).served_model)
        finally:
            await r.aclose()
        return out

    assert asyncio.run(go()) == ["big-local", "small-local", "big-local", "cloud-large"]
    assert by_model(cloud) == {"cloud-large": 1}
    df = read_decision_log(tmp_path / "log")
    assert df.height == 8
    sens = df.filter(df["fallback_reason"].is_null() | (df["served_model"] != "cloud-large"))
    for probs, models in zip(sens["action_probs"].to_list(), sens["action_models"].to_list(), strict=True):
        assert probs[models.index("cloud-large")] == 0.0  # the logged distribution excludes cloud


@pytest.mark.parametrize("behaviour", ["reject", "local_only", "allow_and_alert"])
def test_budget_exhausted_behaviours(backends: Backends, tmp_path: Path, behaviour: str) -> None:
    _local, cloud = backends

    async def go() -> list[Any]:
        # qe-1's budget is below one call's reserved (expected) cost: its call is never admitted to the
        # cloud, even though nothing has been spent yet (the reservation would pass the limit)
        r = _router(backends, tmp_path, budgets={"agents": {"qe-1": {"daily_usd": 0.0002}}, "on_exhausted": behaviour})
        out: list[Any] = []
        try:
            try:
                out.append((await _route(r, HARD_PROMPT, agent_id="qe-1")).served_model)
            except BudgetExhaustedError as e:
                out.append(("429", str(e)))
            out.append((await _route(r, HARD_PROMPT, agent_id="qe-2")).served_model)  # other agent unaffected
            out.append(r.metrics.render().decode())
        finally:
            await r.aclose()
        return out

    first, other, metrics = asyncio.run(go())
    assert other == "cloud-large"
    if behaviour == "reject":
        assert first[0] == "429" and "agent:qe-1:daily" in first[1]
    elif behaviour == "local_only":
        assert first == "big-local"
    else:
        assert first == "cloud-large"
    assert f'router_rl_budget_exhausted_total{{behaviour="{behaviour}",scope="agent:qe-1:daily"}} 1.0' in metrics
    df = read_decision_log(tmp_path / "log")
    assert df.height == 2
    if behaviour == "reject":
        assert df["error"].to_list() == ["budget_exhausted", None]
        assert by_model(cloud) == {"cloud-large": 1}


def test_shadow_and_ab_accounting_is_sticky_and_seeded(backends: Backends, tmp_path: Path) -> None:
    n_agents, per_agent = 40, 3

    async def go() -> HybridRouter:
        r = _router(
            backends, tmp_path,
            rollout={"candidate": "cost_optimized", "percentage": 30, "shadow": {"strategy": "quality_optimized"},
                     "seed": 7},
        )
        try:
            for k in range(per_agent):
                for a in range(n_agents):
                    await _route(r, COMPLEX_PROMPT, agent_id=f"agent-{a}", request_id=f"r-{a}-{k}")
        finally:
            await r.aclose()
        return r

    r = asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    assert df.height == n_agents * per_agent
    per = df.group_by("agent_id").agg(pl.col("strategy").n_unique().alias("n"), pl.col("strategy").first().alias("s"))
    assert per["n"].to_list() == [1] * n_agents  # sticky by agent
    share = sum(s == "cost_optimized" for s in per["s"].to_list()) / n_agents
    assert 0.1 <= share <= 0.5  # ~30% of agents
    # shadow decided for every request, never executed: quality_optimized would pick cloud
    assert df["shadow_model"].to_list() == ["cloud-large"] * df.height
    assert by_model(backends[1]) == {}
    text = r.metrics.render().decode()
    assert f'router_rl_shadow_decisions_total{{agree="false"}} {float(n_agents * per_agent)}' in text
    # cost_optimized picks the cheapest capable model for COMPLEX: big-local is the only local one
    assert set(df.filter(df["strategy"] == "cost_optimized")["served_model"].to_list()) == {"big-local"}

    # same seed, same agents -> identical assignment
    async def again() -> None:
        r2 = _router(backends, tmp_path / "b",
                     rollout={"candidate": "cost_optimized", "percentage": 30, "seed": 7})
        try:
            for a in range(n_agents):
                await _route(r2, COMPLEX_PROMPT, agent_id=f"agent-{a}")
        finally:
            await r2.aclose()

    asyncio.run(again())
    df2 = read_decision_log(tmp_path / "b" / "log")
    first = dict(zip(per["agent_id"].to_list(), per["s"].to_list(), strict=True))
    assert {a: s for a, s in zip(df2["agent_id"].to_list(), df2["strategy"].to_list(), strict=True)} == first


def test_kill_switch_rolls_back_to_quality_optimized_without_restart(backends: Backends, tmp_path: Path) -> None:
    async def go() -> list[str]:
        r = _router(backends, tmp_path, rollout={"candidate": "cost_optimized", "percentage": 100})
        out = []
        try:
            out.append((await _route(r, SIMPLE_PROMPT)).decision.strategy)
            r.set_kill_switch(True, "bad rollout")
            res = await _route(r, SIMPLE_PROMPT)
            assert res.decision.note == "kill_switch" and res.decision.strategy == "balanced"  # requested
            out += [res.decision.decided_by, res.served_model]
            res = await _route(r, SIMPLE_PROMPT, model="router-rl/latency_optimized")
            assert res.decision.strategy == "latency_optimized"
            out.append(res.decision.decided_by)
            res = await _route(r, SIMPLE_PROMPT, model="small-local")  # explicit model still honoured
            out.append(res.served_model)
            r.set_kill_switch(False)
            out.append((await _route(r, SIMPLE_PROMPT)).decision.strategy)
        finally:
            await r.aclose()
        return out

    assert asyncio.run(go()) == ["cost_optimized", "quality_optimized", "cloud-large", "quality_optimized",
                                 "small-local", "cost_optimized"]
    df = read_decision_log(tmp_path / "log")
    assert df["fallback_reason"].to_list()[1:3] == ["kill_switch", "kill_switch"]


def test_unknown_model_and_strategy_are_rejected(backends: Backends, tmp_path: Path) -> None:
    async def go() -> None:
        r = _router(backends, tmp_path)
        try:
            with pytest.raises(UnknownModelError, match="unknown model 'gpt-9'"):
                await _route(r, SIMPLE_PROMPT, model="gpt-9")
            with pytest.raises(UnknownModelError, match="unknown strategy model 'router-rl/fastest'"):
                await _route(r, SIMPLE_PROMPT, model="router-rl/fastest")
        finally:
            await r.aclose()

    asyncio.run(go())
    df = read_decision_log(tmp_path / "log")  # rejected requests are logged too, as never executed
    assert df["error"].to_list() == ["model_not_found", "model_not_found"]
    assert df["served_model"].null_count() == 2 and df["strategy"].to_list() == ["rejected", "rejected"]


def test_decision_log_has_one_valid_row_per_request(backends: Backends, tmp_path: Path) -> None:
    local, _ = backends
    local.backend.faults.replace([{"kind": "http_5xx", "model": "small-local", "probability": 0.5}])
    prompts = [SIMPLE_PROMPT, COMPLEX_PROMPT, HARD_PROMPT, SENSITIVE_PROMPT]

    async def go() -> int:
        r = _router(backends, tmp_path, logging={"decision_log_dir": str(tmp_path / "log"), "batch_size": 7,
                                                 "flush_interval_s": 60})
        n = 0
        try:
            for i in range(40):
                strategy = ["router-rl/auto", "router-rl/cost_optimized", "router-rl/latency_optimized",
                            "router-rl/privacy_first"][i % 4]
                with contextlib.suppress(NoProviderAvailableError):
                    await _route(r, prompts[i % 4], model=strategy, request_id=f"q{i}", agent_id=f"a{i % 3}")
                n += 1
        finally:
            await r.aclose()
        return n

    n = asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    assert df.height == n == 40
    assert sorted(df["request_id"].to_list()) == sorted(f"q{i}" for i in range(40))
    for row in df.iter_rows(named=True):
        probs = row["action_probs"]
        assert abs(sum(probs) - 1) < 1e-9
        assert row["propensity"] == probs[row["action_models"].index(row["chosen_model"])] > 0
        assert row["prompt"] is None and len(row["prompt_sha256"]) == 64
        assert set(json.loads(row["breaker_states"])) == {"local", "cloud"}
        assert row["served_model"] is not None or row["error"] is not None
    assert Counter(df["fallback_used"].to_list())[True] >= 1
