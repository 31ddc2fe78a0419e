"""The replay backend server: routing to tasks, admin endpoints, fault rules, hosting."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from router_rl.core.errors import ConfigError
from router_rl.replay.faults import FaultKind, FaultRule, FaultSet, load_faults
from router_rl.replay.server import ReplayBackend, ReplayBackendServer, load_backend, serve
from router_rl.traces.catalog import ModelCatalog


def chat(srv: ReplayBackendServer, model: str, content: str, task: str | None = None, **body: object) -> httpx.Response:
    headers = {"x-router-rl-task-id": task} if task else {}
    return httpx.post(
        srv.base_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], **body},
        headers=headers,
        timeout=5,
    )


def test_replays_outcomes_by_header_prompt_and_hash(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    with ReplayBackendServer(ReplayBackend.from_frame(df, catalog=cat, time_scale=0.01)) as srv:
        r = chat(srv, "small", "whatever", task="t2")
        assert r.status_code == 200
        assert r.headers["x-router-rl-quality"] == "0.500000" and r.headers["x-router-rl-task-match"] == "header"
        body = r.json()
        assert body["choices"][0]["message"]["content"] == "ok quality=0.5000 task=t2"
        assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        assert body["router_rl"]["recorded_latency_s"] == 2.0
        r = chat(srv, "small", "prompt 1")
        assert r.headers["x-router-rl-task-id"] == "t1" and r.headers["x-router-rl-task-match"] == "prompt"
        assert r.json()["choices"][0]["message"]["content"].startswith("fail quality=0.2500")
        a, b = chat(srv, "small", "never seen"), chat(srv, "small", "never seen")
        assert a.headers["x-router-rl-task-match"] == "hash"
        assert a.headers["x-router-rl-task-id"] == b.headers["x-router-rl-task-id"]
        # recorded latency x time_scale: 2 s x 0.01
        t0 = time.perf_counter()
        chat(srv, "big", "x", task="t0")
        assert time.perf_counter() - t0 >= 0.02
        # recorded timeout -> 504
        r = chat(srv, "big", "x", task="t3")
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        # bad requests name the problem
        r = chat(srv, "nope", "x")
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
        r = chat(srv, "small", "x", task="t99")
        assert r.status_code == 400 and "t99" in r.json()["error"]["message"]
        r = httpx.post(srv.base_url + "/v1/chat/completions", content=b"{not json", timeout=5)
        assert r.status_code == 400
        stats = httpx.get(srv.base_url + "/admin/stats", timeout=5).json()
        assert stats["by_model"] == {"small": 4, "big": 2}  # rejected requests are not replayed
        assert stats["by_task"]["t3"] == 1
        assert httpx.delete(srv.base_url + "/admin/stats", timeout=5).json() == {"total": 0}


def test_admin_faults_roundtrip_and_validation(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    with ReplayBackendServer(ReplayBackend.from_frame(df, catalog=cat, time_scale=0)) as srv:
        url = srv.base_url + "/admin/faults"
        r = httpx.put(url, json={"faults": [{"kind": "http_5xx", "provider": "ollama", "count": 1}]}, timeout=5)
        assert r.status_code == 200
        assert chat(srv, "big", "x", task="t0").status_code == 200  # other provider unaffected
        assert chat(srv, "small", "x", task="t0").status_code == 503
        assert chat(srv, "small", "x", task="t0").status_code == 200  # count exhausted
        listed = httpx.get(url, timeout=5).json()["faults"]
        assert listed[0]["fired"] == 1 and listed[0]["count"] == 0
        httpx.post(url, json={"faults": [{"kind": "http_429", "model": "big", "retry_after_s": 2}]}, timeout=5)
        r = chat(srv, "big", "x", task="t0")
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        bad = httpx.put(url, json={"faults": [{"kind": "http_5xx"}, {"kind": "explode"}]}, timeout=5)
        assert bad.status_code == 422 and "faults[1]" in bad.json()["error"] and "kind" in bad.json()["error"]
        assert len(httpx.get(url, timeout=5).json()["faults"]) == 2  # unchanged by the bad request
        httpx.delete(url, timeout=5)
        assert chat(srv, "big", "x", task="t0").status_code == 200


def test_anthropic_and_ollama_routes(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    with ReplayBackendServer(ReplayBackend.from_frame(df, catalog=cat, time_scale=0)) as srv:
        r = httpx.post(srv.base_url + "/v1/messages", json={"model": "big", "max_tokens": 5, "system": "s",
                                                            "messages": [{"role": "user", "content": "prompt 0"}]})
        body = r.json()
        assert body["content"][0]["text"] == "ok quality=1.0000 task=t0" and body["usage"]["output_tokens"] == 5
        r = httpx.post(srv.base_url + "/v1/messages", json={"model": "nope", "messages": [{"role": "user",
                                                                                          "content": "x"}]})
        assert r.status_code == 404 and r.json()["type"] == "error"
        assert [m["name"] for m in httpx.get(srv.base_url + "/api/tags").json()["models"]] == ["small", "big"]
        assert httpx.get(srv.base_url + "/health").json()["n_tasks"] == 4


def test_kill_endpoint_stops_the_server(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    srv = ReplayBackendServer(ReplayBackend.from_frame(df, catalog=cat)).start()
    try:
        assert httpx.post(srv.base_url + "/admin/kill", timeout=5).json() == {"status": "stopping"}
        assert srv.wait_stopped(5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.base_url + "/health", timeout=1)
    finally:
        srv.stop()


def test_fault_probability_draws_are_seeded() -> None:
    def fired(seed: int) -> list[bool]:
        fs = FaultSet([{"kind": "http_5xx", "probability": 0.3}], seed=seed)
        return [fs.pick(model="m", provider=None, api="openai", stream=False) is not None for _ in range(200)]

    a, b, c = fired(1), fired(1), fired(2)
    assert a == b and a != c
    assert 40 <= sum(a) <= 80  # ~30% of 200


def test_fault_rule_filters_and_status_checks() -> None:
    rule = FaultRule(kind=FaultKind.STALL_AFTER_FIRST_TOKEN, api="anthropic", stream=True)
    assert rule.matches(model="x", provider=None, api="anthropic", stream=True)
    assert not rule.matches(model="x", provider=None, api="openai", stream=True)
    assert not rule.matches(model="x", provider=None, api="anthropic", stream=False)
    with pytest.raises(ValueError, match="needs a status >= 500"):
        FaultRule(kind=FaultKind.HTTP_5XX, status=404)
    assert FaultRule(kind=FaultKind.HTTP_4XX).http_status == 400


def test_load_faults_from_yaml_names_file_and_index(tmp_path: Path) -> None:
    good = tmp_path / "f.yaml"
    good.write_text("faults:\n  - kind: timeout\n    delay_s: 2\n  - kind: reset\n    model: big\n")
    rules = load_faults(good)
    assert [r.kind for r in rules] == [FaultKind.TIMEOUT, FaultKind.RESET] and rules[0].delay_s == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("- kind: reset\n- kind: http_429\n  probability: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml\[1\].*probability"):
        load_faults(bad)


def test_backend_validation(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    with pytest.raises(ConfigError, match="time_scale"):
        ReplayBackend.from_frame(df, catalog=cat, time_scale=-1)
    b = ReplayBackend.from_frame(df, catalog=cat)
    assert b.error_kinds[3, 1] == "timeout" and b.error_kinds[0, 0] is None
    with pytest.raises(ConfigError, match="loopback"):
        serve(b, host="0.0.0.0")


def test_simulated_fleet_and_trace_file(tmp_path: Path) -> None:
    b = load_backend(None, n_tasks=20, seed=3, time_scale=0)
    assert b.matrix.n_tasks == 20 and len(b.models) == 7
    assert b.resolve_task(None, ["x"]) == load_backend(None, n_tasks=20, seed=3).resolve_task(None, ["x"])
    # a recorded prompt maps back to its task
    prompt = b.matrix.tasks["prompt"][5]
    assert b.resolve_task(None, [prompt]) == (5, "prompt")
    from router_rl.traces.simulate import simulate_fleet

    path = simulate_fleet(10, seed=1).save(tmp_path / "fleet.parquet")
    b2 = load_backend(path, faults=[{"kind": "reset"}])
    assert b2.matrix.n_tasks == 10 and b2.faults.rules[0].kind == FaultKind.RESET
    err = b2.matrix.error
    assert np.array_equal(err, np.vectorize(lambda x: x is not None)(b2.error_kinds).astype(bool))
