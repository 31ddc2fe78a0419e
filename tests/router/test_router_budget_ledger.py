"""Budgets that hold: reservations under concurrency, a durable ledger across restart and SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _router_helpers import ADMIN_TOKEN, API_TOKEN, CLOUD_KEY, CLOUD_KEY_ENV, SIMPLE_PROMPT, by_model, router_config

from router_rl.replay.server import ReplayBackendServer
from router_rl.router.budget import BudgetConfig, BudgetTracker, Reservation
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.errors import BudgetExhaustedError
from router_rl.router.request import RouteInput
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
CLOUD = "router-rl/quality_optimized"  # picks cloud-large on these backends


def _inp(agent: str = "qe-1", max_tokens: int = 16) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": SIMPLE_PROMPT}], model=CLOUD, agent_id=agent,
                      max_tokens=max_tokens)


def test_reservations_are_atomic_and_settle_to_actual_cost(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    bt = BudgetTracker(BudgetConfig.model_validate({"global": {"daily_usd": 1.0}, "ledger_path": tmp_path / "l.db"}),
                       clock=lambda: now[0])
    got = [bt.reserve("a", 0.3) for _ in range(4)]
    assert [isinstance(g, Reservation) for g in got] == [True, True, True, False]  # 0.9 held, 1.2 would pass
    assert got[3].exhausted and got[3].scope == "global:daily"  # type: ignore[union-attr]
    assert bt.reserved() == pytest.approx(0.9) and bt.spent() == 0
    bt.settle(got[0], 0.1)  # type: ignore[arg-type]
    bt.settle(got[0], 0.1)  # type: ignore[arg-type]  # idempotent
    assert bt.reserved() == pytest.approx(0.6) and bt.spent() == pytest.approx(0.1)
    assert isinstance(bt.reserve("a", 0.3), Reservation)  # 0.1 + 0.6 + 0.3 = 1.0 fits exactly
    bt.close()
    again = BudgetTracker(bt.config, clock=lambda: now[0])  # restart: settled + unsettled reservations count
    assert again.spent() == pytest.approx(0.1 + 0.3 + 0.3 + 0.3) and again.recovered_unsettled == 3
    now[0] += 86_400  # next UTC day: the daily budget starts over
    assert isinstance(again.reserve("a", 0.9), Reservation)
    again.close()


@pytest.mark.parametrize("behaviour", ["local_only", "reject"])
def test_100_concurrent_cloud_calls_stay_within_the_daily_budget(
    backends: Backends, tmp_path: Path, behaviour: str
) -> None:
    """Before reservations, every concurrent call passed the check (spend ended ~13x over the limit)."""
    local, cloud = backends

    async def go() -> tuple[HybridRouter, list[Any], float]:
        cfg = router_config(local.base_url, cloud.base_url, logging={"decision_log_dir": str(tmp_path / "log")})
        probe = HybridRouter(parse_config(cfg))
        est = probe.estimate_cost(SIMPLE_PROMPT, 16, "cloud-large")
        await probe.aclose()
        limit = 10.5 * est  # room for 10 reservations
        r = HybridRouter(parse_config({**cfg, "budgets": {"global": {"daily_usd": limit}, "on_exhausted": behaviour,
                                                          "ledger_path": str(tmp_path / "spend.db")}}))
        try:
            out = await asyncio.gather(*(r.route(_inp(f"qe-{i % 7}")) for i in range(100)), return_exceptions=True)
        finally:
            await r.aclose()
        return r, out, limit

    r, out, limit = asyncio.run(go())
    unexpected = [o for o in out if isinstance(o, BaseException) and not isinstance(o, BudgetExhaustedError)]
    assert not unexpected, unexpected[:3]
    n_cloud = by_model(cloud).get("cloud-large", 0)
    assert n_cloud == 10
    df = read_decision_log(tmp_path / "log")
    cloud_rows = df.filter(df["served_model"] == "cloud-large")
    spent = float(cloud_rows["cost_usd"].sum())
    est = r.estimate_cost(SIMPLE_PROMPT, 16, "cloud-large")
    # documented bound: limit + sum of (actual - reserved)+ over admitted calls
    bound = limit + sum(max(0.0, c - est) for c in cloud_rows["cost_usd"].to_list())
    assert spent <= bound + 1e-12 and r.budget.spent() == pytest.approx(float(df["cost_usd"].fill_null(0).sum()))
    assert r.budget.reserved() == pytest.approx(0.0, abs=1e-12)
    if behaviour == "reject":
        assert sum(isinstance(o, BudgetExhaustedError) for o in out) == 90
    else:
        assert df.height == 100 and set(df["served_model"].to_list()) <= {"cloud-large", "big-local", "small-local"}


def test_spend_survives_a_restart(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    cfg = {**router_config(local.base_url, cloud.base_url),
           "budgets": {"per_agent": {"daily_usd": 1.0}, "ledger_path": str(tmp_path / "spend.db")}}

    async def calls(n: int) -> tuple[float, float]:
        r = HybridRouter(parse_config(cfg))
        try:
            before = r.budget.spent("qe-1")
            for _ in range(n):
                await r.route(_inp())
            return before, r.budget.spent("qe-1")
        finally:
            await r.aclose()

    b1, a1 = asyncio.run(calls(3))
    b2, a2 = asyncio.run(calls(2))
    assert b1 == 0 and a1 > 0 and b2 == pytest.approx(a1) and a2 == pytest.approx(a1 * 5 / 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cfg_path: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, CLOUD_KEY_ENV: CLOUD_KEY, "ROUTER_RL_API_TOKENS": API_TOKEN,
           "ROUTER_RL_ADMIN_TOKENS": ADMIN_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "router_rl", "router", "serve", "--config", str(cfg_path),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"router exited: {proc.communicate()[1][-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("router did not come up")


def _state(port: int) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{port}/admin/state", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    return dict(r.json()["budget"])


def _call(port: int) -> httpx.Response:
    body = {"model": CLOUD, "messages": [{"role": "user", "content": SIMPLE_PROMPT}], "max_tokens": 16}
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {API_TOKEN}", "x-agent-id": "qe-1"})


@pytest.mark.slow
def test_spend_survives_sigkill_of_a_real_router_process(backends: Backends, tmp_path: Path) -> None:
    """Two calls settle, a third is in flight when the router is SIGKILLed: after restart all three count."""
    local, cloud = backends
    cfg = router_config(local.base_url, cloud.base_url)
    probe = HybridRouter(parse_config(cfg))
    est = probe.estimate_cost(SIMPLE_PROMPT, 16, "cloud-large")
    actual = probe.catalog["cloud-large"].cost(40, 12)  # the replay backend's usage
    asyncio.run(probe.aclose())
    limit = 2 * actual + est + est / 2  # after 2 settled + 1 interrupted call, one more does not fit
    cfg["budgets"] = {"global": {"daily_usd": limit}, "on_exhausted": "reject", "ledger_path": "spend.db"}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    port = _free_port()
    proc = _start(tmp_path / "router.yaml", port)
    try:
        assert [_call(port).status_code for _ in range(2)] == [200, 200]
        assert _state(port)["spent_daily_usd"] == pytest.approx(2 * actual)
        cloud.backend.faults.replace([{"kind": "timeout", "model": "cloud-large", "delay_s": 30}])
        t = threading.Thread(target=lambda: _call_quiet(port), daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while by_model(cloud).get("cloud-large", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(port)["reserved_daily_usd"] == pytest.approx(est)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        cloud.backend.faults.clear()
        if proc.poll() is None:
            proc.kill()
    proc = _start(tmp_path / "router.yaml", port)
    try:
        st = _state(port)
        assert st["spent_daily_usd"] == pytest.approx(2 * actual + est)  # the interrupted call at its reservation
        assert st["recovered_unsettled_reservations"] == 1
        r = _call(port)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exhausted"
        assert by_model(cloud).get("cloud-large", 0) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def _call_quiet(port: int) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the router is SIGKILLed under this call
        _call(port)
