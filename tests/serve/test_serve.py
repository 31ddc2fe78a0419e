"""Ray Serve policy deployment: real Ray, real HTTP on 127.0.0.1, hot swap, health, and the client."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from router_rl.features import FeatureEncoder
from router_rl.policies import RoutingPolicy, make_policy
from router_rl.serve.client import RemotePolicyClient, RemotePolicyError
from router_rl.serve.engine import PolicyEngine
from router_rl.serve.protocol import RouteRequest, TaskRecord
from router_rl.traces import simulate_fleet

RECORDS = [
    {"prompt": "Write pytest unit tests for parse_date()", "agent_type": "test-generator"},
    {"prompt": "Review this diff for race conditions\n@@ -1,3 +1,4 @@", "agent_type": "code-reviewer"},
]


def _save_policy(tmp: Path, name: str, kind: str, **kw: object) -> tuple[Path, RoutingPolicy]:
    ts = simulate_fleet(200, seed=3)
    m = ts.matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy(kind, m.models, **kw)
    pol.fit(enc.transform(m.tasks), m, seed=0)
    pol.encoder = enc
    return pol.save(tmp / name), pol


def test_engine_routes_records_like_the_policy(tmp_path: Path) -> None:
    d, pol = _save_policy(tmp_path, "single", "single", model="qwen2.5-coder:7b")
    eng = PolicyEngine(d)
    resp = eng.route(RouteRequest(records=[TaskRecord(**r) for r in RECORDS]))
    assert resp.models == list(pol.models)
    assert resp.chosen == ["qwen2.5-coder:7b", "qwen2.5-coder:7b"]
    assert resp.propensity == [1.0, 1.0]
    np.testing.assert_allclose(np.sum(resp.probs, axis=1), 1.0)


def test_engine_propensity_of_the_deterministic_argmax_is_one(tmp_path: Path) -> None:
    """A policy with a spread-out distribution: ``chosen`` is its argmax, whose propensity is 1."""
    d, _ = _save_policy(tmp_path, "soft", "lgbm", config={"num_boost_round": 10, "cv_folds": 2},
                          decision={"temperature": 0.5})
    resp = PolicyEngine(d).route(RouteRequest(records=[TaskRecord(**r) for r in RECORDS]))
    p = np.asarray(resp.probs)
    assert (p.max(axis=1) < 0.9).all()  # not one-hot: p[argmax] would be a wrong propensity
    assert resp.chosen == [resp.models[i] for i in p.argmax(axis=1)]
    assert resp.propensity == [1.0, 1.0]


def test_engine_refuses_artifact_without_encoder(tmp_path: Path) -> None:
    m = simulate_fleet(50, seed=1).matrix()
    d = make_policy("cheapest", m.models).save(tmp_path / "noenc")
    with pytest.raises(ValueError, match="no feature encoder"):
        PolicyEngine(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.ray
def test_ray_serve_deploy_route_hot_swap_and_health(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from ray import serve

    from router_rl.serve.deployment import PolicyDeployment

    first, _ = _save_policy(tmp_path, "a", "single", model="qwen2.5-coder:7b")
    second, _ = _save_policy(tmp_path, "b", "single", model="claude-sonnet-4.5")
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        def deploy(policy_dir: Path) -> None:
            # a fixed code version makes a user_config change a lightweight reconfigure() of the live replica
            app = PolicyDeployment.options(version="1", user_config={"policy_dir": str(policy_dir)}).bind(str(first))
            serve.run(app, name="policy", route_prefix="/policy")

        async def call() -> tuple[list[str], bool, str]:
            client = RemotePolicyClient(f"http://127.0.0.1:{port}/policy", timeout_s=10.0)
            try:
                resp = await client.route(RECORDS)
                health = await client.health()
                return resp.chosen, health.ok, health.policy_version
            finally:
                await client.aclose()

        deploy(first)
        chosen, ok, _ = asyncio.run(call())
        assert chosen == ["qwen2.5-coder:7b"] * 2 and ok

        deploy(second)  # user_config change -> reconfigure() on the live replica
        chosen, ok, v2 = asyncio.run(call())
        assert chosen == ["claude-sonnet-4.5"] * 2 and ok

        deploy(tmp_path / "missing")  # a bad artifact keeps the old policy serving, reported unhealthy
        chosen, ok, v3 = asyncio.run(call())
        assert chosen == ["claude-sonnet-4.5"] * 2
        assert not ok and v3 == v2
    finally:
        serve.shutdown()
        ray.shutdown()


def test_client_reports_unreachable_endpoint_as_remote_policy_error() -> None:
    async def go() -> None:
        client = RemotePolicyClient(f"http://127.0.0.1:{_free_port()}/policy", timeout_s=0.5)
        try:
            with pytest.raises(RemotePolicyError, match="remote policy"):
                await client.route(RECORDS)
        finally:
            await client.aclose()

    asyncio.run(go())
