"""The real Ray Serve deployment on 127.0.0.1: the one client, PPO with router state, the router, hot swap.

One Ray cluster and Serve instance for the whole module (Ray startup is the slow part).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ppo_helpers import MORNING, PROMPTS, check_ppo_rows, route_two_phases, sim_router_config

from router_rl.features import FeatureEncoder
from router_rl.policies import RoutingPolicy, make_policy
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_client import HTTPPolicyClient
from router_rl.serve.client import RemotePolicyClient, RemotePolicyError
from router_rl.serve.engine import PolicyEngine
from router_rl.serve.protocol import RouteRequest, RouterState, TaskRecord
from router_rl.traces import simulate_fleet
from router_rl.traces.decision_log import read_decision_log

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RECORDS = [
    {"prompt": "Write pytest unit tests for parse_date()", "agent_type": "test-generator"},
    {"prompt": "Review this diff for race conditions\n@@ -1,3 +1,4 @@", "agent_type": "code-reviewer"},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _save_single(tmp: Path, name: str, model: str) -> Path:
    m = simulate_fleet(200, seed=3).matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy("single", m.models, model=model)
    pol.fit(enc.transform(m.tasks), m, seed=0)
    pol.attach_encoder(enc)
    return pol.save(tmp / name)


@pytest.fixture(scope="module")
def serve_url(ray_head: Any) -> Iterator[str]:
    """Serve on the session's Ray head (HTTP proxy on 127.0.0.1, a free port); yields the proxy's base URL."""
    ray = pytest.importorskip("ray")
    from ray import serve

    port = _free_port()
    ray.init(address=ray_head.gcs_address, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _deploy(name: str, policy_dir: Path, first: Path | None = None) -> None:
    from ray import serve

    from router_rl.serve.deployment import PolicyDeployment

    # a fixed code version makes a user_config change a lightweight reconfigure() of the live replica
    app = PolicyDeployment.options(version="1", user_config={"policy_path": str(policy_dir)}).bind(
        str(first or policy_dir)
    )
    serve.run(app, name=name, route_prefix=f"/{name}")


@pytest.fixture(scope="module")
def ppo_url(serve_url: str, ppo_dir: Path) -> str:
    _deploy("ppo", ppo_dir)
    return f"{serve_url}/ppo"


def test_client_against_the_ppo_deployment(ppo_url: str, ppo_dir: Path) -> None:
    local = PolicyEngine(ppo_dir)
    state = RouterState(budget_remaining_frac=0.2, elapsed_frac=0.5, local_share=0.4,
                        breakers={"anthropic": "open", "openrouter": "closed"})
    recs = [TaskRecord(**r, state=state) for r in RECORDS]

    async def go() -> tuple[Any, Any, RemotePolicyError]:
        client = RemotePolicyClient(ppo_url, timeout_s=30.0)
        try:
            health = await client.health()
            resp = await client.route(RouteRequest(records=recs))
            with pytest.raises(RemotePolicyError) as ei:
                await client.route(RECORDS)  # no state: refused, with the reason
            return health, resp, ei.value
        finally:
            await client.aclose()

    health, resp, err = asyncio.run(go())
    assert health.ok and health.policy_version == local.version
    assert health.state is not None and health.state.providers == ["anthropic", "openrouter"]
    np.testing.assert_allclose(resp.probs, local.evaluate(recs).probs, atol=1e-6)
    assert err.reason == "refused" and "needs the router state" in str(err)


def test_router_serves_ppo_through_ray_serve_with_the_state_it_logs(
    ppo_url: str, ppo_dir: Path, sim_backends: tuple[ReplayBackendServer, ReplayBackendServer], tmp_path: Path
) -> None:
    local, cloud = sim_backends
    cfg = parse_config(sim_router_config(
        local.base_url, cloud.base_url, learned={"endpoint": ppo_url, "timeout_s": 30.0},
        logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60},
    ))
    clock = [MORNING]
    router = HybridRouter(cfg, wall_clock=lambda: clock[0])
    assert isinstance(router.policy_client, HTTPPolicyClient)
    route_two_phases(router, clock)
    df = read_decision_log(tmp_path / "log")
    assert df.height == 2 * len(PROMPTS) + 6
    check_ppo_rows(df, RoutingPolicy.load(ppo_dir), limit_usd=0.002)
    assert "router_rl_policy_errors_total{" not in router.metrics.render().decode()


def test_hot_swap_and_health(serve_url: str, tmp_path: Path) -> None:
    first = _save_single(tmp_path, "a", "qwen2.5-coder:7b")
    second = _save_single(tmp_path, "b", "claude-sonnet-4.5")
    url = f"{serve_url}/swap"

    async def call() -> tuple[list[str], bool, str]:
        client = RemotePolicyClient(url, timeout_s=30.0)
        try:
            resp = await client.route(RECORDS)
            health = await client.health()
            assert health.state is None  # a stateless policy needs no router state
            return resp.chosen, health.ok, health.policy_version
        finally:
            await client.aclose()

    _deploy("swap", first)
    chosen, ok, _ = asyncio.run(call())
    assert chosen == ["qwen2.5-coder:7b"] * 2 and ok

    _deploy("swap", second, first)  # user_config change -> reconfigure() on the live replica
    chosen, ok, v2 = asyncio.run(call())
    assert chosen == ["claude-sonnet-4.5"] * 2 and ok

    _deploy("swap", tmp_path / "missing", first)  # a bad artifact keeps the old policy serving, reported unhealthy
    chosen, ok, v3 = asyncio.run(call())
    assert chosen == ["claude-sonnet-4.5"] * 2
    assert not ok and v3 == v2


def test_reconfigure_under_load(serve_url: str, tmp_path: Path) -> None:
    """Concurrent /route calls while the deployment reconfigures to a new policy_dir: none fails, answers switch."""
    import threading

    import httpx

    first = _save_single(tmp_path, "la", "qwen2.5-coder:7b")
    second = _save_single(tmp_path, "lb", "claude-sonnet-4.5")
    url = f"{serve_url}/load/route"
    _deploy("load", first)
    swapped = threading.Event()
    stop = threading.Event()
    seen: list[list[tuple[int, str, bool]]] = [[] for _ in range(4)]

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as http:
            n_after = 0
            while not stop.is_set() and n_after < 15:
                after = swapped.is_set()
                r = http.post(url, json={"records": RECORDS[:1]})
                chosen = r.json()["chosen"][0] if r.status_code == 200 else ""
                seen[k].append((r.status_code, chosen, after))
                n_after += int(after)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        while min(len(s) for s in seen) < 5:  # traffic flows before the swap
            stop.wait(0.05)
        _deploy("load", second, first)  # user_config change -> reconfigure() on the live replica, under load
        swapped.set()
    finally:
        if not swapped.is_set():  # the swap failed: stop the clients now
            stop.set()
        for t in threads:
            t.join(timeout=120)
        stop.set()
    calls = [c for s in seen for c in s]
    assert calls and {status for status, _, _ in calls} == {200}, [c for c in calls if c[0] != 200][:3]
    assert {chosen for _, chosen, _ in calls} == {"qwen2.5-coder:7b", "claude-sonnet-4.5"}
    for s in seen:  # per client: the old answer, then the new one, never back
        chosen = [c for _, c, _ in s]
        first_new = chosen.index("claude-sonnet-4.5")
        assert set(chosen[first_new:]) == {"claude-sonnet-4.5"} and set(chosen[:first_new]) == {"qwen2.5-coder:7b"}
        assert s[-1][1] == "claude-sonnet-4.5" and s[-1][2]


def test_concurrent_requests_are_batched_and_a_refused_one_fails_alone(ppo_url: str, ppo_dir: Path) -> None:
    """16 concurrent callers (one replica, @serve.batch): each gets its own records' answer; the one
    request without router state is refused (422) while the others of its batch are answered."""
    local = PolicyEngine(ppo_dir)
    rng = np.random.default_rng(0)
    states = [RouterState(budget_remaining_frac=float(rng.uniform()), elapsed_frac=float(rng.uniform()),
                          local_share=float(rng.uniform()),
                          breakers={"anthropic": "open" if k % 2 else "closed", "openrouter": "closed"})
              for k in range(16)]
    requests = [RouteRequest(records=[TaskRecord(**RECORDS[k % 2], state=states[k])] * (1 + k % 3))
                for k in range(16)]

    async def go() -> tuple[list[Any], RemotePolicyError]:
        client = RemotePolicyClient(ppo_url, timeout_s=60.0)
        try:
            refused = client.route(RECORDS[:1])  # no state
            out = await asyncio.gather(refused, *(client.route(r) for r in requests), return_exceptions=True)
            assert isinstance(out[0], RemotePolicyError)
            return list(out[1:]), out[0]
        finally:
            await client.aclose()

    answers, err = asyncio.run(go())
    assert err.reason == "refused"
    for req, resp in zip(requests, answers, strict=True):
        assert not isinstance(resp, BaseException), resp
        np.testing.assert_allclose(resp.probs, local.evaluate(req.records).probs, atol=1e-6)
    # the states differ, so the answers do: a mix-up between requests of one batch would show
    assert len({tuple(np.round(a.probs[0], 6)) for a in answers}) > 4
