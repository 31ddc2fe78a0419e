"""A stalled local backend: hedged / early failover serves from the next model, and the breaker learns the stall."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _router_helpers import LOCAL_MODELS, SIMPLE_PROMPT, by_model, make_catalog, make_frame, router_config

from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.request import RouteInput
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]


def _router(backends: Backends, tmp_path: Path, **fallback: Any) -> HybridRouter:
    local, cloud = backends
    cfg = router_config(local.base_url, cloud.base_url, fallback={"latency_threshold_s": 2.0, **fallback},
                        breaker={"consecutive_failures": 3, "window": 50, "min_calls": 50, "reset_timeout_s": 300},
                        logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60})
    # one provider (so one breaker) per local model, as with two local GPU servers
    lp = cfg["providers"][0]
    cfg["providers"][0:1] = [{**lp, "name": "local-a", "models": [lp["models"][0]]},
                             {**lp, "name": "local-b", "models": [lp["models"][1]]}]
    return HybridRouter(parse_config(cfg))


def _inp(i: int) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": SIMPLE_PROMPT}], request_id=f"r{i}", max_tokens=8)


@pytest.mark.parametrize("stream", [False, True])
def test_hedge_serves_around_a_stalled_backend_and_the_breaker_then_skips_it(
    backends: Backends, tmp_path: Path, stream: bool
) -> None:
    local, _cloud = backends
    kind = "stall_before_first_token" if stream else "timeout"  # headers then silence / no answer at all
    local.backend.faults.replace([{"kind": kind, "model": "small-local", "delay_s": 60}])

    async def go() -> tuple[list[str], str]:
        r = _router(backends, tmp_path, hedge_after_s=0.2)
        served = []

        async def one(i: int) -> str:
            if stream:
                session = await r.route_stream(_inp(i))
                async for _ev in session.events():
                    pass
                return session.served_model
            return (await r.route(_inp(i))).served_model

        try:
            served += [await one(i) for i in range(3)]
            # the 3 hedge losers run on in the background until their own 2 s timeout: 3 stalls open the breaker
            for _ in range(400):
                if r.breakers["local-a"].state.value == "open":
                    break
                await asyncio.sleep(0.025)
            state = r.breakers["local-a"].state.value
            served += [await one(i) for i in range(3, 6)]
        finally:
            await r.aclose()
        return served, state

    served, state = asyncio.run(go())
    assert served == ["big-local"] * 6 and state == "open"
    df = read_decision_log(tmp_path / "log").sort("request_id")
    att = df["attempts"].to_list()
    # the first 3 requests hedged around the stall: served by big-local without waiting for small-local
    assert att[:3] == [["small-local:hedge_lost"]] * 3, att
    # then small-local's breaker is open: the next requests skip it without touching its backend
    assert att[3:] == [["small-local:breaker_open"]] * 3
    assert by_model(local).get("small-local", 0) == 3
    assert df["fallback_reason"].to_list()[3:] == ["breaker_open"] * 3
    assert (df["chosen_model"] == "small-local").all() and (df["outcome_model"] == "big-local").all()
    assert df.filter(pl.col("latency_s") >= 2.0).height == 0  # never waited for the 2 s attempt timeout


def test_a_slow_but_healthy_hedge_loser_is_not_counted_as_a_failure(backends: Backends, tmp_path: Path) -> None:
    """small-local answers after 0.6 s, the hedge (big-local) wins; the late success keeps the breaker closed."""
    frame = make_frame(LOCAL_MODELS).with_columns(
        pl.when(pl.col("model") == "small-local").then(0.6).otherwise(0.0).alias("latency_s"))
    slow = ReplayBackend.from_frame(frame, catalog=make_catalog(LOCAL_MODELS, "local", "local"), time_scale=1.0)
    with ReplayBackendServer(slow) as srv:
        async def go() -> tuple[list[str], int, str]:
            r = _router((srv, backends[1]), tmp_path, hedge_after_s=0.1)
            try:
                served = [(await r.route(_inp(i))).served_model for i in range(5)]
                for _ in range(200):  # wait for the background losers
                    if not r.chain.losers:
                        break
                    await asyncio.sleep(0.02)
                b = r.breakers["local-a"]
                return served, b.consecutive_failures, b.state.value
            finally:
                await r.aclose()

        served, fails, state = asyncio.run(go())
        assert by_model(srv) == {"small-local": 5, "big-local": 5}
    assert served == ["big-local"] * 5 and fails == 0 and state == "closed"


def test_without_hedging_a_stall_costs_the_full_attempt_timeout(backends: Backends, tmp_path: Path) -> None:
    """Baseline of the same setup: the stalled attempt runs into its timeout before the failover."""
    local, _cloud = backends
    local.backend.faults.replace([{"kind": "timeout", "model": "small-local", "delay_s": 60}])

    async def go() -> str:
        r = _router(backends, tmp_path, latency_threshold_s=0.5)
        try:
            return (await r.route(_inp(0))).served_model
        finally:
            await r.aclose()

    assert asyncio.run(go()) == "big-local"
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["attempts"] == ["small-local:timeout"] and row["latency_s"] >= 0.5


def test_hedge_budget_bounds_hedges_and_losers_are_not_cancelled() -> None:
    from router_rl.router.hedging import HedgeBudget, race

    async def go() -> tuple[list[str], list[str], list[str], bool]:
        budget = HedgeBudget(per_request=0.5, burst=1.0)
        hedged: list[str] = []
        losers: list[str] = []
        loser_futs: list[asyncio.Future[Any]] = []
        gates: list[asyncio.Event] = []
        winners = []
        for _ in range(3):
            gate = asyncio.Event()  # "a" answers only when its gate opens
            gates.append(gate)

            async def slow(gate: asyncio.Event = gate) -> str | None:
                await gate.wait()
                return "slow"

            async def fast() -> str | None:
                return "fast"

            chain: list[Any] = [("a", slow), ("b", fast)]

            def start_next(chain: list[Any] = chain) -> tuple[str, Any] | None:
                if not chain:
                    return None
                name, fn = chain.pop(0)
                return name, fn()

            budget.on_request()
            if budget.tokens < 1.0:  # no hedge possible: open a's gate a little later
                asyncio.get_running_loop().call_later(0.05, gate.set)
            got = await race(start_next, hedge_after_s=0.01, max_hedges=1, budget=budget, on_hedge=hedged.append,
                             on_loser=lambda n, f: (losers.append(n), loser_futs.append(f)))
            assert got is not None
            winners.append(got[1])
        for g in gates:
            g.set()
        await asyncio.gather(*loser_futs)
        return winners, hedged, losers, all(not f.cancelled() for f in loser_futs)

    winners, hedged, losers, none_cancelled = asyncio.run(go())
    # burst 1: the first race hedges to b; +0.5 per request: the second has 0.5 tokens (waits for a),
    # the third 1.0 again (hedges)
    assert winners == ["b", "a", "b"]
    assert hedged == ["b", "b"] and losers == ["a", "a"] and none_cancelled
