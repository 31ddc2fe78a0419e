"""Serve as operators run it: the shipped config (Ray's schema), the application builder, and on a
real local head (``ray start --head --dashboard-host 127.0.0.1``): ``serve deploy`` / ``serve status``
and autoscaling under load (a second replica, read from ``serve.status()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router_rl.features import FeatureEncoder
from router_rl.policies import make_policy
from router_rl.serve.app import ARGS, AppArgsError, load_serve_config, parse_args
from router_rl.serve.protocol import RouteResponse
from router_rl.traces import simulate_fleet

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "serve" / "policy.yaml"
RECORD = {"prompt": "Write pytest unit tests for parse_date()", "agent_type": "test-generator"}


def _save_single(out: Path) -> Path:
    m = simulate_fleet(200, seed=3).matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy("single", m.models, model="qwen2.5-coder:7b")
    pol.fit(enc.transform(m.tasks), m, seed=0)
    pol.attach_encoder(enc)
    return pol.save(out)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_single(tmp_path_factory.mktemp("pol") / "single")


def _config(policy_path: Path, port: int, **deployment: Any) -> dict[str, Any]:
    cfg = yaml.safe_load(SHIPPED.read_text())
    cfg["http_options"]["port"] = port
    app = cfg["applications"][0]
    app["args"]["policy_path"] = str(policy_path)
    app["deployments"][0].update(deployment)
    return cfg


def test_the_shipped_config_passes_rays_schema_and_names_every_knob(artifact: Path) -> None:
    schema = load_serve_config(SHIPPED)
    (app,) = schema.applications
    assert app.import_path == "router_rl.serve.app:build_app" and app.route_prefix == "/policy"
    assert schema.http_options.host == "127.0.0.1"
    (dep,) = app.deployments
    assert dep.name == "RoutingPolicy"
    auto = dep.autoscaling_config
    assert isinstance(auto, dict)
    assert 1 <= auto["min_replicas"] <= auto["initial_replicas"] <= auto["max_replicas"]
    assert auto["target_ongoing_requests"] < dep.max_ongoing_requests
    assert dep.health_check_period_s == 5 and dep.graceful_shutdown_timeout_s == 10
    assert set(app.args) == set(ARGS) and app.args["policy_path"] == "/srv/router-rl/policy"
    # the builder accepts the shipped arguments once policy_path names a real artifact
    cfg = parse_args({**app.args, "policy_path": str(artifact)})
    assert (cfg.max_batch_size, cfg.batch_wait_timeout_s) == (32, 0.0)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(target_ongoing_request=8), "unknown option(s) ['target_ongoing_request']"),
    (lambda d: d["autoscaling_config"].update(max_replica=2), "unknown option(s) ['max_replica']"),
    (lambda d: d["autoscaling_config"].update(min_replicas=5), "autoscaling_config"),
    (lambda d: d.update(user_config={"policy_dir": "/x"}), "user_config"),
])
def test_a_misspelt_or_wrong_option_is_refused_not_ignored(tmp_path: Path, edit: Any, message: str) -> None:
    cfg = yaml.safe_load(SHIPPED.read_text())
    edit(cfg["applications"][0]["deployments"][0])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="RoutingPolicy") as ei:
        load_serve_config(path)
    assert message in str(ei.value) and str(path) in str(ei.value)


def test_builder_arguments_are_checked_by_name(artifact: Path, tmp_path: Path) -> None:
    cfg = parse_args({"policy_path": str(artifact), "max_batch_size": "8", "batch_wait_timeout_s": "0.002"})
    assert (cfg.policy_path, cfg.max_batch_size, cfg.batch_wait_timeout_s) == (str(artifact), 8, 0.002)
    with pytest.raises(AppArgsError, match="missing argument policy_path"):
        parse_args({})
    with pytest.raises(AppArgsError, match=r"unknown argument\(s\) \['policy_dir'\]"):
        parse_args({"policy_dir": str(artifact)})
    with pytest.raises(AppArgsError, match="argument max_batch_size='many'"):
        parse_args({"policy_path": str(artifact), "max_batch_size": "many"})
    with pytest.raises(AppArgsError, match="is not a folder"):
        parse_args({"policy_path": str(tmp_path / "missing")})


def test_a_batched_answer_splits_back_into_its_requests() -> None:
    whole = RouteResponse(policy_version="v", models=["a", "b"], probs=[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]],
                          chosen=["a", "b", "a"], propensity=[1.0, 1.0, 1.0])
    first, second = whole.split([1, 2])
    assert first.probs == [[1.0, 0.0]] and first.chosen == ["a"]
    assert second.probs == [[0.0, 1.0], [0.5, 0.5]] and second.chosen == ["b", "a"] and second.models == ["a", "b"]
    with pytest.raises(ValueError, match="do not partition 3"):
        whole.split([1, 1])


# -- a real local head ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head(ray_head: Any) -> Iterator[Any]:
    """The session's head; this module's Serve applications are shut down when it ends."""
    from _ray_head import ray_bin, run_cli

    try:
        yield ray_head
    finally:
        run_cli(ray_head, ray_bin("serve"), "shutdown", "-a", ray_head.dashboard_url, "-y")


def _wait_running(head: Any, app: str, timeout_s: float = 300.0) -> dict[str, Any]:
    from _ray_head import ray_bin, run_cli

    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = yaml.safe_load(run_cli(head, ray_bin("serve"), "status", "-a", head.dashboard_url).stdout)
        st = (status.get("applications") or {}).get(app, {}).get("status")
        if st == "RUNNING":
            return status
        if st == "DEPLOY_FAILED":
            raise AssertionError(f"{app} failed to deploy: {status}")
        time.sleep(2.0)
    raise AssertionError(f"{app} not RUNNING after {timeout_s}s: {status}")


@pytest.mark.ray
@pytest.mark.slow
def test_serve_deploy_and_status_against_a_local_head(head: Any, artifact: Path, tmp_path: Path) -> None:
    from _ray_head import free_port, ray_bin, run_cli

    port = free_port()
    cfg_path = tmp_path / "policy.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(artifact, port)))
    load_serve_config(cfg_path)
    out = run_cli(head, ray_bin("serve"), "deploy", str(cfg_path), "-a", head.dashboard_url)
    assert "Sent deploy request successfully" in out.stdout + out.stderr
    status = _wait_running(head, "router-rl-policy")
    dep = status["applications"]["router-rl-policy"]["deployments"]["RoutingPolicy"]
    assert dep["status"] in ("HEALTHY", "UPSCALING") and dep["replica_states"].get("RUNNING", 0) >= 1
    r = httpx.post(f"http://127.0.0.1:{port}/policy/route", json={"records": [RECORD]}, timeout=60)
    assert r.status_code == 200 and r.json()["chosen"] == ["qwen2.5-coder:7b"]
    h = httpx.get(f"http://127.0.0.1:{port}/policy/health", timeout=60).json()
    assert h["ok"] is True and h["state"] is None


@pytest.mark.ray
@pytest.mark.slow
def test_load_brings_up_a_second_replica(head: Any, artifact: Path, tmp_path: Path) -> None:
    import ray
    from _ray_head import free_port, ray_bin, run_cli
    from ray import serve

    port = free_port()
    cfg = _config(artifact, port, autoscaling_config={
        "min_replicas": 1, "initial_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 1, "downscale_delay_s": 600, "look_back_period_s": 2,
    })
    cfg["applications"][0]["name"] = "scaled"
    cfg["applications"][0]["route_prefix"] = "/scaled"
    cfg_path = tmp_path / "scaled.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    load_serve_config(cfg_path)
    # a Serve instance keeps the HTTP options it started with: start this one on its own port
    run_cli(head, ray_bin("serve"), "shutdown", "-a", head.dashboard_url, "-y")
    run_cli(head, ray_bin("serve"), "deploy", str(cfg_path), "-a", head.dashboard_url)
    _wait_running(head, "scaled")

    ray.init(address=head.gcs_address, log_to_driver=False)
    try:
        def running() -> int:
            dep = serve.status().applications["scaled"].deployments["RoutingPolicy"]
            return int(dep.replica_states.get("RUNNING", 0))

        assert running() == 1
        stop = threading.Event()
        answered: list[int] = []

        def load() -> None:
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    answered.append(http.post(f"http://127.0.0.1:{port}/scaled/route",
                                              json={"records": [RECORD] * 64}).status_code)

        threads = [threading.Thread(target=load) for _ in range(12)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 240
            n = running()
            while n < 2 and time.monotonic() < deadline:
                time.sleep(1.0)
                n = running()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=120)
        assert n == 2, f"still {n} replica(s) after 240 s of load ({len(answered)} requests)"
        assert answered and set(answered) == {200}
    finally:
        # forget this head's Serve controller: later tests of the process start their own Ray
        from ray.serve.context import _set_global_client

        _set_global_client(None)
        ray.shutdown()


@pytest.mark.slow
def test_the_floor_endpoint_answers_as_the_engine(artifact: Path) -> None:
    """The bench's floor (plain uvicorn + FastAPI, its own process) serves the same decision and protocol."""
    import asyncio
    import os
    import subprocess
    import sys

    from _ray_head import free_port

    from router_rl.serve.client import RemotePolicyClient
    from router_rl.serve.engine import PolicyEngine
    from router_rl.serve.protocol import RouteRequest, TaskRecord

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "router_rl.serve.floor", "--policy", str(artifact),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # a loaded machine: importing the engine's stack takes long
        up = False
        while not up and time.monotonic() < deadline:
            assert proc.poll() is None, "the floor server exited"
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert up, "the floor server did not answer /health in 300 s"
        req = RouteRequest(records=[TaskRecord(**RECORD), TaskRecord(prompt="Review this diff", agent_type="x")])

        async def go() -> Any:
            client = RemotePolicyClient(f"http://127.0.0.1:{port}", timeout_s=30.0)
            try:
                return await client.route(req), await client.health()
            finally:
                await client.aclose()

        resp, health = asyncio.run(go())
        want = PolicyEngine(artifact).route(req)
        assert resp.chosen == want.chosen and resp.probs == want.probs and health.policy_version == want.policy_version
    finally:
        proc.terminate()
        proc.wait(timeout=30)
