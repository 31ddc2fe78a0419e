"""Hot swap of the in-process learned policy (``POST /admin/policy``) on a real router under concurrent load."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import polars as pl
import pytest
from _live_helpers import (
    Backends,
    admin,
    chat,
    engine_version,
    make_registry,
    policy_state,
    start_router,
)
from _router_helpers import router_config, save_random_policy

from router_rl.core.errors import ConfigError
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_client import InProcessPolicyClient, PolicyAnswer, PolicyClient
from router_rl.router.policy_slot import PolicySlot
from router_rl.serve.protocol import TaskRecord
from router_rl.traces.decision_log import read_decision_log


@pytest.mark.slow
def test_swaps_under_load_fail_no_request_and_every_row_names_its_version(backends: Backends, tmp_path: Path) -> None:
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001"])
    names = {v1: f"{v1}/{engine_version(reg, v1)}", v2: f"{v2}/{engine_version(reg, v2)}"}
    _, srv = start_router(backends, tmp_path, reg.root)
    statuses: list[int] = []
    sent_after_last: list[str] = []
    last_done = threading.Event()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=srv.base_url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                after = last_done.is_set()
                rid = f"c{k}-{i}"
                statuses.append(chat(http, rid).status_code)
                if after:
                    sent_after_last.append(rid)
                i += 1

    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        swaps = [v2, v1, v2, v1, v2]
        for j, v in enumerate(swaps):
            n0 = len(statuses)
            while len(statuses) < n0 + 15:  # traffic flows between swaps
                stop.wait(0.01)
            r = admin(http, "/admin/policy", {"version": v, "reason": f"swap {j}"})
            assert r.status_code == 200, r.text
            assert r.json()["policy"]["live_version"] == v
        last_done.set()
        n0 = len(statuses)
        while len(statuses) < n0 + 30:
            stop.wait(0.01)
        stop.set()
        for t in threads:
            t.join()
        st = policy_state(http)
    assert statuses and set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200]}"
    rows = read_decision_log(tmp_path / "decisions")
    assert rows.height == len(statuses)
    assert set(rows["policy_version"].unique()) == set(names.values())  # both served, nothing else
    after = rows.filter(pl.col("request_id").is_in(sent_after_last))
    assert after.height == len(sent_after_last) >= 30
    assert set(after["policy_version"]) == {names[v2]}
    assert st["live_version"] == v2 and st["previous_versions"][-1] == v1
    assert reg.live == v2  # the admin swap went through the registry (its own set_live records)
    assert [r["version"] for r in reg.records("set_live")][-5:] == swaps


def test_swap_refusals_name_the_problem_and_keep_the_live_version(backends: Backends, tmp_path: Path) -> None:
    reg, (v1,) = make_registry(tmp_path, 1, live=["v0001"])
    other = save_random_policy(tmp_path / "two-models", ("small-local", "gpt-unknown"), [0.5, 0.5])
    v_bad = reg.register(other)
    _, srv = start_router(backends, tmp_path, reg.root)
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        r = admin(http, "/admin/policy", {"version": "v0099"})
        assert r.status_code == 409 and "unknown registry version 'v0099'" in r.json()["error"]["message"]
        r = admin(http, "/admin/policy", {"version": v_bad})
        assert r.status_code == 409 and "gpt-unknown" in r.json()["error"]["message"]
        r = admin(http, "/admin/policy", {"policy_dir": str(other)})
        assert r.status_code == 409 and "register the artifact" in r.json()["error"]["message"]
        r = admin(http, "/admin/policy", {"version": v1, "policy_dir": "x"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "version"
        r = admin(http, "/admin/policy", {"versoin": v1})
        assert r.status_code == 400 and "versoin" in r.json()["error"]["message"]
        r = http.post("/admin/policy", json={"version": v1})  # no admin token
        assert r.status_code == 401
        assert policy_state(http)["live_version"] == v1 and chat(http, "after").status_code == 200


def test_policy_dir_swap_without_registry(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    a = save_random_policy(tmp_path / "a", ("small-local", "big-local", "cloud-large"), [1.0, 0.0, 0.0])
    b = save_random_policy(tmp_path / "b", ("small-local", "big-local", "cloud-large"), [0.0, 1.0, 0.0])
    cfg = parse_config(router_config(local.base_url, cloud.base_url, strategy="learned",
                                     learned={"policy_dir": str(a)}))
    router = HybridRouter.from_config(cfg)
    from router_rl.router.server import RouterServer, build_server_app

    with RouterServer(build_server_app(router)) as srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        assert chat(http, "r0").headers["x-router-chosen-model"] == "small-local"
        r = admin(http, "/admin/policy", {"policy_dir": str(b)})
        assert r.status_code == 200, r.text
        h = chat(http, "r1").headers
        assert h["x-router-chosen-model"] == "big-local"
        assert h["x-router-policy"] == InProcessPolicyClient.from_dir(b).name  # no registry: the engine version
        r = admin(http, "/admin/rollback", {"role": "live", "reason": "by hand"})
        assert r.status_code == 200, r.text
        assert r.json()["policy"]["rollback_count"] == 1
        assert chat(http, "r2").headers["x-router-chosen-model"] == "small-local"
        r = admin(http, "/admin/rollback", {"role": "live"})  # nothing before a
        assert r.status_code == 409 and "no previous version" in r.json()["error"]["message"]


def test_registry_config_errors_name_learned_registry(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    from router_rl.registry import PolicyRegistry

    def build(path: Path) -> None:
        HybridRouter.from_config(parse_config(router_config(local.base_url, cloud.base_url, strategy="learned",
                                                            learned={"registry": str(path)})))

    with pytest.raises(ConfigError) as ei:
        build(tmp_path / "missing")
    assert ei.value.setting == "learned.registry" and "not a folder" in ei.value.problem
    empty = PolicyRegistry.create(tmp_path / "empty").root
    with pytest.raises(ConfigError) as ei:
        build(empty)
    assert ei.value.setting == "learned.registry" and "no live version" in ei.value.problem
    with pytest.raises(ConfigError) as ei:
        parse_config(router_config(local.base_url, cloud.base_url,
                                   learned={"registry": str(empty), "policy_dir": str(tmp_path)}))
    assert ei.value.setting == "learned" and "only one of policy_dir / endpoint / registry" in ei.value.problem


class _Gated(PolicyClient):
    """A real in-process policy whose answer waits for a gate (to hold a call in flight)."""

    def __init__(self, inner: InProcessPolicyClient) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.closed = False

    @property
    def models(self) -> tuple[str, ...]:
        return self.inner.models

    @property
    def name(self) -> str:
        return self.inner.name

    async def distribution(self, record: TaskRecord) -> PolicyAnswer:
        await self.gate.wait()
        return await self.inner.distribution(record)

    async def close(self) -> None:
        self.closed = True


def test_a_replaced_slot_closes_only_after_its_calls_in_flight(tmp_path: Path) -> None:
    art = save_random_policy(tmp_path / "p", ("small-local", "big-local"), [0.5, 0.5])

    async def run() -> None:
        gated = _Gated(InProcessPolicyClient.from_dir(art))
        slot = PolicySlot(gated, registry_version="v0007")
        call = asyncio.create_task(slot.distribution(TaskRecord(prompt="hi")))
        await asyncio.sleep(0)
        assert slot.in_flight == 1
        retire = asyncio.create_task(slot.retire())
        await asyncio.sleep(0.05)
        assert not gated.closed and not retire.done()
        gated.gate.set()
        ans = await call
        await retire
        assert gated.closed and ans.version == f"v0007/{gated.name}"

    asyncio.run(run())


def test_start_on_rules_with_an_empty_registry_then_swap_in(backends: Backends, tmp_path: Path) -> None:
    """The closed loop's start: a rule strategy, an empty registry, the learned arm of the A/B at 0%."""
    from router_rl.registry import PolicyRegistry
    from router_rl.router.server import RouterServer, build_server_app

    local, cloud = backends
    reg = PolicyRegistry.create(tmp_path / "registry")
    cfg = parse_config(router_config(
        local.base_url, cloud.base_url, strategy="balanced", learned={"registry": str(reg.root)},
        rollout={"candidate": "learned", "sticky_by": "request"},
    ))
    router = HybridRouter.from_config(cfg)
    with RouterServer(build_server_app(router)) as srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        assert chat(http, "a0").headers["x-router-policy"].startswith("rules@")
        assert policy_state(http)["live_version"] is None
        v1 = reg.register(save_random_policy(tmp_path / "p1", ("small-local", "big-local", "cloud-large"),
                                             [0.2, 0.6, 0.2]))
        r = admin(http, "/admin/policy", {"version": v1, "reason": "first promotion"})
        assert r.status_code == 200, r.text
        assert admin(http, "/admin/rollout", {"percentage": 100}).status_code == 200
        h = chat(http, "a1").headers
    assert h["x-router-strategy"] == "learned" and h["x-router-policy"] == f"{v1}/{engine_version(reg, v1)}"
    assert reg.live == v1 and reg.records("set_live")[-1]["reason"] == "first promotion"
