"""A real Prometheus server on 127.0.0.1 scrapes a running router; queries return the traffic's numbers.

The shipped rules are loaded with their evaluation interval shortened to 1 s (the only change);
Prometheus is started from Debian's package with a temporary config and data folder and stopped
by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _ops_helpers import DEPLOY, IN_TOKENS, OUT_TOKENS, TOKEN, LiveFleet
from openai import OpenAI

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def stack(tmp_path: Path, prometheus_bin: str) -> Iterator[tuple[LiveFleet, str]]:
    with LiveFleet(tmp_path / "fleet") as fleet:
        rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
        for g in rules["groups"]:
            g["interval"] = "1s"
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        target = fleet.base_url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [{"job_name": "router-rl", "static_configs": [{"targets": [target]}]}],
        }))
        port = _free_port()
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                try:
                    if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "prometheus did not become ready in 60 s"
                time.sleep(0.2)
            yield fleet, url
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _wait_value(url: str, expr: str, want: float, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    res: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        res = _query(url, expr)
        if res and abs(float(res[0]["value"][1]) - want) < 1e-9:
            return res
        time.sleep(0.5)
    raise AssertionError(f"{expr}: expected {want}, last answer {res}")


def _send(fleet: LiveFleet, n: int, fault_every: int | None = None) -> None:
    sdk = OpenAI(base_url=fleet.base_url + "/v1", api_key=TOKEN, max_retries=0)
    for i in range(n):
        if fault_every is not None and i % fault_every == 0:
            httpx.post(fleet.local.base_url + "/admin/faults",
                       json={"faults": [{"kind": "http_5xx", "count": 1, "model": "small-local"}]}).raise_for_status()
        sdk.chat.completions.create(model="small-local",
                                    messages=[{"role": "user", "content": "Write unit tests for m1"}],
                                    extra_headers={"x-agent-type": "test-generation"})


def test_prometheus_scrapes_the_router_and_evaluates_the_rules(stack: tuple[LiveFleet, str]) -> None:
    fleet, url = stack
    # phase A creates every series (ok answers of small-local, one fallback to big-local) ...
    _send(fleet, 10, fault_every=10)
    _wait_value(url, 'sum(router_rl_requests_total{strategy!="rejected"})', 10)
    # ... phase B grows them: 22 requests, 2 of them answered by the fallback
    _send(fleet, 22, fault_every=11)
    total = 32
    _wait_value(url, 'sum(router_rl_requests_total{strategy!="rejected"})', total)
    got = _query(url, 'sum by (outcome) (router_rl_requests_total{strategy="explicit"})')
    assert {r["metric"]["outcome"]: float(r["value"][1]) for r in got} == {"ok": 29.0, "fallback": 3.0}
    _wait_value(url, 'sum(router_rl_tokens_total{direction="output"})', total * OUT_TOKENS)
    _wait_value(url, 'sum(router_rl_tokens_total{direction="input"})', total * IN_TOKENS)
    assert float(_query(url, 'router_rl_provider_up{provider="local"}')[0]["value"][1]) == 1.0
    # the recording rule over what Prometheus saw grow after phase A: 2 fallbacks in 22 requests
    time.sleep(3)
    deadline = time.monotonic() + 30
    while True:
        res = _query(url, "router_rl:fallback_ratio:rate5m")
        if res and abs(float(res[0]["value"][1]) - 2 / 22) < 1e-6:
            break
        assert time.monotonic() < deadline, f"router_rl:fallback_ratio:rate5m = {res}, expected {2 / 22}"
        time.sleep(0.5)
    assert float(_query(url, "router_rl:error_ratio:rate5m")[0]["value"][1]) == 0.0
    # the alert: 9% fallbacks > 5%, pending (its `for` is 10 minutes)
    alerts = httpx.get(url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["labels"]["alertname"] == "RouterFallbackWarning"] == [
        "RouterFallbackWarning"]
    assert next(a for a in alerts if a["labels"]["alertname"] == "RouterFallbackWarning")["state"] == "pending"
