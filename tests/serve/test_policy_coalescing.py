"""Client-side coalescing of the router's remote policy calls, over real HTTP servers on 127.0.0.1.

The endpoint is the floor app (:mod:`router_rl.serve.floor`: the deployment's ``/route`` over one
``PolicyEngine``), wrapped to count the ``/route`` calls and the records each carried; fake
endpoints only inject a stall or an HTTP 500.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ppo_helpers import AGENT_TYPE, MORNING, PROMPTS, expected_probs, inp, sim_router_config
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from router_rl.core.asgi import ThreadedASGIServer
from router_rl.features import FeatureEncoder
from router_rl.policies import RoutingPolicy, make_policy
from router_rl.router.config import CoalesceConfig, parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_batcher import RouteCoalescer, ThreadedRouteCoalescer
from router_rl.router.policy_client import HTTPPolicyClient, PolicyClientError
from router_rl.serve.client import RemotePolicyClient, RemotePolicyError
from router_rl.serve.engine import PolicyEngine
from router_rl.serve.floor import make_floor_app
from router_rl.serve.protocol import RouterState, TaskRecord
from router_rl.traces import simulate_fleet
from router_rl.traces.decision_log import read_decision_log

AGENTS = ("test-generator", "code-reviewer", "refactorer")


class CountingApp:
    """ASGI wrapper recording, per ``POST /route`` call, how many records it carried (before answering)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/route"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        self.calls.append(len(json.loads(body)["records"]))
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)


@pytest.fixture(scope="module")
def lgbm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LightGBM artifact whose distribution differs from record to record (temperature 0.5)."""
    m = simulate_fleet(200, seed=3).matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy("lgbm", m.models, config={"num_boost_round": 10, "cv_folds": 2}, decision={"temperature": 0.5})
    pol.fit(enc.transform(m.tasks), m, seed=0)
    pol.encoder = enc
    return pol.save(tmp_path_factory.mktemp("coalesce") / "lgbm")


def _state() -> RouterState:
    return RouterState(budget_remaining_frac=0.5, elapsed_frac=0.25, local_share=0.1,
                       breakers={"local": "closed", "anthropic": "closed", "openrouter": "closed"})


def _records(n: int) -> list[TaskRecord]:
    return [TaskRecord(prompt=f"{PROMPTS[i % len(PROMPTS)]} #{i}" * (1 + i % 3), agent_type=AGENTS[i % len(AGENTS)],
                       max_tokens=64 * (1 + i % 4), n_messages=1 + i % 2, state=_state()) for i in range(n)]


def _stall_app(release: threading.Event, arrived: list[int]) -> FastAPI:
    app = FastAPI()

    @app.post("/route")
    async def route(request: Request) -> JSONResponse:
        arrived.append(len((await request.json())["records"]))
        await asyncio.to_thread(release.wait, 30.0)
        return JSONResponse({"detail": "released"}, status_code=503)

    return app


def _failing_app(calls: list[int]) -> FastAPI:
    app = FastAPI()

    @app.post("/route")
    async def route(request: Request) -> JSONResponse:
        calls.append(len((await request.json())["records"]))
        return JSONResponse({"detail": "replica crashed"}, status_code=500)

    return app


@pytest.mark.parametrize("io_thread", [False, True])
def test_concurrent_callers_share_calls_and_each_gets_its_own_distribution(lgbm_dir: Path, io_thread: bool) -> None:
    records = _records(40)
    want = PolicyEngine(lgbm_dir).evaluate(records).probs
    assert np.abs(want - want[0]).max() > 1e-3  # the records' distributions differ: a mix-up would show
    app = CountingApp(make_floor_app(lgbm_dir))
    with ThreadedASGIServer(app) as srv:
        async def go() -> tuple[list[Any], Any]:
            client = HTTPPolicyClient(srv.base_url, tuple(RoutingPolicy.load(lgbm_dir).models), timeout_s=30.0,
                                      max_batch=16, max_in_flight=2, io_thread=io_thread)
            try:
                answers = await asyncio.gather(*(client.distribution(r) for r in records))
                assert client.coalescer is not None
                return answers, client.coalescer.stats
            finally:
                await client.close()

        answers, stats = asyncio.run(go())
    assert len(app.calls) < len(records)  # fewer HTTP calls than callers
    assert sum(app.calls) == len(records) and max(app.calls) <= 16  # every record sent once, max_batch kept
    assert stats.calls == len(app.calls) and stats.records == 40 and stats.abandoned == 0
    for i, a in enumerate(answers):
        np.testing.assert_allclose(a.probs, want[i], atol=1e-9, err_msg=f"record {i}")
        assert a.version == RoutingPolicy.load(lgbm_dir).version


def test_uncoalesced_client_sends_one_call_per_record(lgbm_dir: Path) -> None:
    records = _records(6)
    app = CountingApp(make_floor_app(lgbm_dir))
    with ThreadedASGIServer(app) as srv:
        async def go() -> list[Any]:
            client = HTTPPolicyClient(srv.base_url, tuple(RoutingPolicy.load(lgbm_dir).models), timeout_s=30.0)
            try:
                assert client.coalescer is None
                return await asyncio.gather(*(client.distribution(r) for r in records))
            finally:
                await client.close()

        answers = asyncio.run(go())
    assert app.calls == [1] * 6
    np.testing.assert_allclose([a.probs for a in answers], PolicyEngine(lgbm_dir).evaluate(records).probs, atol=1e-9)


@pytest.mark.parametrize("io_thread", [False, True])
def test_stalled_endpoint_times_each_caller_out_at_its_own_deadline(io_thread: bool) -> None:
    """The first caller's call stalls (its limit is that caller's deadline); the others, queued behind
    it, then share one stalled call: every caller fails ``timeout`` after its own deadline, in
    deadline order, and the short deadlines do not wait for the long one's call limit."""
    release, arrived = threading.Event(), []
    timeouts = [0.3, 0.6, 0.9, 20.0]
    with ThreadedASGIServer(_stall_app(release, arrived)) as srv:
        async def go() -> list[tuple[float, float, RemotePolicyError]]:
            co: RouteCoalescer | ThreadedRouteCoalescer
            if io_thread:
                co = ThreadedRouteCoalescer(srv.base_url, client_timeout_s=30.0, max_batch=64, max_in_flight=1)
            else:
                co = RouteCoalescer(RemotePolicyClient(srv.base_url, timeout_s=30.0), max_batch=64, max_in_flight=1)
            done: list[tuple[float, float, RemotePolicyError]] = []

            async def caller(rec: TaskRecord, t: float, delay: float) -> None:
                await asyncio.sleep(delay)
                t0 = time.monotonic()
                try:
                    await co.route_one(rec, t)
                except RemotePolicyError as e:
                    done.append((t, time.monotonic() - t0, e))

            recs = _records(len(timeouts))
            tasks = [asyncio.create_task(caller(r, t, 0.0 if i == 0 else 0.05)) for i, (r, t) in
                     enumerate(zip(recs, timeouts, strict=True))]
            await asyncio.wait(tasks[:3])  # the three short deadlines, while the long one still waits
            assert not tasks[3].done()
            assert co.in_flight == 1 and co.queued == 0  # the three queued callers' call, stalled
            release.set()
            await asyncio.gather(*tasks)
            await co.aclose()
            if isinstance(co, RouteCoalescer):
                await co.client.aclose()
            return done

        done = asyncio.run(go())
    assert [t for t, _, _ in done] == timeouts  # each finished in the order of its own deadline
    for t, took, e in done[:3]:
        assert e.reason == "timeout"
        assert t <= took < t + 5.0  # not before its deadline; far from the 20 s caller's
    assert done[3][2].reason == "http_error"  # the long caller got its batch's real answer (503)
    assert arrived == [1, 3]  # the lone first caller was sent at once, then the three queued ones together


@pytest.mark.parametrize("io_thread", [False, True])
def test_failing_batch_labels_every_caller(lgbm_dir: Path, io_thread: bool) -> None:
    calls: list[int] = []
    with ThreadedASGIServer(_failing_app(calls)) as srv:
        async def go() -> list[BaseException | Any]:
            client = HTTPPolicyClient(srv.base_url, tuple(RoutingPolicy.load(lgbm_dir).models), timeout_s=30.0,
                                      max_batch=64, max_in_flight=1, io_thread=io_thread)
            try:
                return await asyncio.gather(*(client.distribution(r) for r in _records(12)), return_exceptions=True)
            finally:
                await client.close()

        out = asyncio.run(go())
    assert all(isinstance(e, PolicyClientError) and e.reason == "http_error" for e in out), out
    assert all("HTTP 500" in str(e) and "replica crashed" in str(e) for e in out)
    assert len(calls) < 12 and sum(calls) == 12


@pytest.mark.parametrize("io_thread", [False, True])
def test_closing_the_client_fails_waiting_callers_with_closed(io_thread: bool) -> None:
    release, arrived = threading.Event(), []
    with ThreadedASGIServer(_stall_app(release, arrived)) as srv:
        async def go() -> list[BaseException | Any]:
            client = HTTPPolicyClient(srv.base_url, ("a", "b"), timeout_s=30.0, max_batch=4, max_in_flight=1,
                                      io_thread=io_thread)
            tasks = [asyncio.create_task(client.distribution(r)) for r in _records(10)]
            while not arrived:  # one call in flight (stalled), the rest queued
                await asyncio.sleep(0.01)
            assert client.coalescer is not None
            # on the caller's loop all 10 queue before the first call leaves (4 of them sent); on the
            # I/O thread the first call may leave before the others arrive
            assert client.coalescer.queued == 10 - arrived[0] and 1 <= arrived[0] <= 4
            await client.close()
            out = await asyncio.gather(*tasks, return_exceptions=True)
            with pytest.raises(PolicyClientError, match="closed"):
                await client.distribution(_records(1)[0])
            release.set()
            return out

        out = asyncio.run(go())
    assert len(out) == 10
    assert all(isinstance(e, PolicyClientError) and e.reason == "closed" for e in out), out
    assert len(arrived) == 1 and (io_thread or arrived == [4])  # nothing was sent after the close


@pytest.mark.parametrize("io_thread", [False, True])
def test_refused_batch_is_resent_alone_and_only_the_refused_record_fails(ppo_dir: Path, io_thread: bool) -> None:
    """The deployment refuses a whole request when one record lacks the state PPO needs (HTTP 422):
    the others of the batch are re-sent one per call and answered; only the bad one is ``refused``."""
    engine = PolicyEngine(ppo_dir)
    good = engine.fresh_state()
    bad = good.model_copy(update={"budget_remaining_frac": None})
    records = [TaskRecord(prompt=p, agent_type=AGENT_TYPE, state=bad if i == 2 else good)
               for i, p in enumerate(PROMPTS)]
    app = CountingApp(make_floor_app(ppo_dir))
    with ThreadedASGIServer(app) as srv:
        async def go() -> tuple[list[BaseException | Any], Any]:
            client = HTTPPolicyClient(srv.base_url, engine.models, timeout_s=30.0, max_batch=64, max_in_flight=1,
                                      io_thread=io_thread)
            try:
                out = await asyncio.gather(*(client.distribution(r) for r in records), return_exceptions=True)
                assert client.coalescer is not None
                return out, client.coalescer.stats
            finally:
                await client.close()

        out, stats = asyncio.run(go())
    if not io_thread:  # one batch of all four (on the I/O thread the first call may leave alone)
        assert app.calls == [len(records)] + [1] * len(records)  # the refused batch, then each record alone
        assert stats.retried_alone == len(records)
    assert sum(app.calls) == len(records) + stats.retried_alone
    assert isinstance(out[2], PolicyClientError) and out[2].reason == "refused"
    assert "budget_remaining_frac" in str(out[2])
    for i, r in enumerate(records):
        if i != 2:
            np.testing.assert_allclose(out[i].probs, engine.evaluate([r]).probs[0], atol=1e-9)


def test_router_with_coalescing_logs_every_decision_as_learned(
    ppo_dir: Path, sim_backends: tuple[Any, Any], tmp_path: Path
) -> None:
    """40 concurrent router requests over the coalescing endpoint client: fewer ``/route`` calls than
    requests, and every decision-log row is PPO's distribution under exactly its logged state."""
    local, cloud = sim_backends
    app = CountingApp(make_floor_app(ppo_dir))
    with ThreadedASGIServer(app) as srv:
        cfg = parse_config(sim_router_config(
            local.base_url, cloud.base_url,
            learned={"endpoint": srv.base_url, "timeout_s": 20.0, "coalesce": {"max_batch": 16}},
            logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60}))
        assert cfg.learned.coalesce == CoalesceConfig(enabled=True, max_batch=16, max_in_flight=2, io_thread=True)
        router = HybridRouter(cfg, wall_clock=lambda: MORNING)
        assert isinstance(router.policy_client, HTTPPolicyClient)
        assert isinstance(router.policy_client.coalescer, ThreadedRouteCoalescer)  # the default: own I/O thread

        async def go() -> None:
            try:
                await asyncio.gather(*(router.route(inp(PROMPTS[i % len(PROMPTS)], f"c{i}")) for i in range(40)))
            finally:
                await router.aclose()

        asyncio.run(go())
    assert len(app.calls) < 40 and sum(app.calls) == 40
    df = read_decision_log(tmp_path / "log")
    policy = RoutingPolicy.load(ppo_dir)
    assert df.height == 40 and set(df["policy_version"]) == {policy.version}
    assert df["fallback_reason"].null_count() == 40 and set(df["decided_by"]) == {"learned"}
    for row in df.iter_rows(named=True):
        rec = {"prompt": PROMPTS[int(row["request_id"][1:]) % len(PROMPTS)], "agent_type": AGENT_TYPE,
               "n_messages": 1}
        got = dict(zip(row["action_models"], row["action_probs"], strict=True))
        np.testing.assert_allclose([got[m] for m in policy.models], expected_probs(policy, rec, row["policy_state"]),
                                   atol=1e-6)


def test_coalesce_config_is_strict() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        CoalesceConfig(max_in_flight=0)
    with pytest.raises(ValueError, match=r"extra|max_batches"):
        CoalesceConfig.model_validate({"max_batches": 8})
    assert CoalesceConfig() == CoalesceConfig(enabled=True, max_batch=64, max_in_flight=2, io_thread=True)
