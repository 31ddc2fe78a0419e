"""The OpenAI-compatible HTTP server: SDK compatibility, auth, errors, admin, metrics, secrets hygiene."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from _router_helpers import (
    ADMIN_TOKEN,
    API_TOKEN,
    CLOUD_KEY,
    HARD_PROMPT,
    SENSITIVE_PROMPT,
    SIMPLE_PROMPT,
    by_model,
    router_config,
)

from router_rl.core.errors import ConfigError
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import load_config, parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]


@pytest.fixture
def server(backends: Backends, tmp_path: Path) -> Iterator[RouterServer]:
    local, cloud = backends
    cfg = parse_config(router_config(
        local.base_url, cloud.base_url,
        logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 0.05},
        rollout={"candidate": "cost_optimized"},
    ))
    router = HybridRouter.from_config(cfg)
    with RouterServer(build_server_app(router)) as srv:
        yield srv


def _client(srv: RouterServer, token: str = API_TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key=token, max_retries=0, timeout=10)


def test_openai_sdk_non_stream_and_stream(server: RouterServer, backends: Backends) -> None:
    c = _client(server)
    r = c.chat.completions.create(
        model="router-rl/auto", messages=[{"role": "user", "content": SIMPLE_PROMPT}], max_tokens=64,
        extra_headers={"x-agent-id": "qe-7", "x-agent-type": "test-generator"},
    )
    assert r.model == "small-local"
    assert r.choices[0].message.content is not None and r.choices[0].message.content.startswith("ok quality=")
    assert r.usage is not None and r.usage.prompt_tokens == 40 and r.usage.completion_tokens == 12
    chunks = list(c.chat.completions.create(
        model="router-rl/quality_optimized", messages=[{"role": "user", "content": HARD_PROMPT}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("ok quality=")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert by_model(backends[1]) == {"cloud-large": 1}
    models = [m.id for m in c.models.list()]
    assert models[0] == "router-rl/auto" and "router-rl/cost_optimized" in models and "big-local" in models


def test_sdk_sees_a_broken_stream_as_an_error(server: RouterServer, backends: Backends) -> None:
    backends[0].backend.faults.replace([{"kind": "reset_after_first_token", "stream": True}])
    c = _client(server)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="broke after the first token"):
        for ch in c.chat.completions.create(model="small-local", messages=[{"role": "user", "content": "hi"}],
                                            stream=True):
            got.append(ch.choices[0].delta.content or "")
    assert "".join(got)  # the first token arrived before the error


def test_auth_and_malformed_requests_get_openai_error_bodies(server: RouterServer) -> None:
    url = server.base_url + "/v1/chat/completions"
    ok_body: dict[str, Any] = {"model": "router-rl/auto", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        ({}, ok_body, 401, "missing bearer token"),
        ({"authorization": "Bearer nope"}, ok_body, 401, "invalid bearer token"),
        (auth, "{not json", 400, "not valid JSON"),
        (auth, {"messages": ok_body["messages"]}, 400, "model: expected a non-empty string"),
        (auth, {"model": "router-rl/auto", "messages": []}, 400, "messages: expected a non-empty array"),
        (auth, {**ok_body, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        (auth, {**ok_body, "max_tokens": -3}, 400, "max_tokens: expected a positive integer"),
        (auth, {**ok_body, "temperature": "hot"}, 400, "temperature"),
        (auth, {**ok_body, "bogus": 1}, 400, "unsupported field(s) ['bogus']"),
        (auth, {**ok_body, "tools": []}, 400, "unsupported field(s) ['tools']"),
        (auth, {**ok_body, "top_p": "high"}, 400, "top_p: expected a finite number"),
        (auth, {**ok_body, "model": "gpt-9"}, 404, "unknown model 'gpt-9'"),
    ]
    with httpx.Client(timeout=10) as h:
        for headers, body, status, msg in cases:
            if isinstance(body, str):
                resp = h.post(url, content=body, headers={**headers, "content-type": "application/json"})
            else:
                resp = h.post(url, json=body, headers=headers)
            assert resp.status_code == status, (body, resp.text)
            err = resp.json()["error"]
            assert msg in err["message"] and set(err) == {"message", "type", "param", "code"}
        assert h.get(server.base_url + "/nope").json()["error"]["type"] == "not_found_error"
        assert h.get(server.base_url + "/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        _client(server, "wrong").chat.completions.create(model="router-rl/auto", messages=ok_body["messages"])


def test_admin_kill_switch_and_rollout_over_http(server: RouterServer) -> None:
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    c = _client(server)
    msgs: list[Any] = [{"role": "user", "content": SIMPLE_PROMPT}]
    with httpx.Client(base_url=server.base_url, timeout=10) as h:
        assert h.post("/admin/kill-switch", json={"active": True},
                      headers={"authorization": f"Bearer {API_TOKEN}"}).status_code == 401
        assert h.post("/admin/kill-switch", json={"active": "yes"}, headers=admin).status_code == 400
        st = h.post("/admin/kill-switch", json={"active": True, "reason": "regression"}, headers=admin).json()
        assert st["kill_switch"] is True and st["kill_switch_reason"] == "regression"
        r = c.chat.completions.with_raw_response.create(model="router-rl/auto", messages=msgs)
        assert r.headers["x-router-strategy"] == "quality_optimized" and r.parse().model == "cloud-large"
        assert h.get("/health").json()["kill_switch"] is True
        h.post("/admin/kill-switch", json={"active": False}, headers=admin)
        assert h.post("/admin/rollout", json={"percentage": 101}, headers=admin).status_code == 400
        assert h.post("/admin/rollout", json={"percentage": 100}, headers=admin).json()["rollout_percentage"] == 100
        r = c.chat.completions.with_raw_response.create(model="router-rl/auto", messages=msgs)
        assert r.headers["x-router-strategy"] == "cost_optimized"
        assert float(r.headers["x-router-overhead-ms"]) >= 0
        st = h.get("/admin/state", headers=admin).json()
        assert st["breakers"] == {"local": "closed", "cloud": "closed"}


def test_secrets_and_prompts_never_in_outputs(
    server: RouterServer, backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = _client(server)
    backends[0].backend.faults.replace([{"kind": "http_5xx", "model": "small-local", "count": 1}])
    captured: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for prompt in (SIMPLE_PROMPT, SENSITIVE_PROMPT, HARD_PROMPT):
            r = c.chat.completions.create(model="router-rl/auto", messages=[{"role": "user", "content": prompt}])
            assert r.choices[0].message.content
        with httpx.Client(timeout=10) as h:
            for body in ({"model": "gpt-9", "messages": [{"role": "user", "content": SENSITIVE_PROMPT}]},
                         {"model": "router-rl/auto", "messages": [{"role": "robot", "content": SENSITIVE_PROMPT}]}):
                resp = h.post(server.base_url + "/v1/chat/completions", json=body,
                              headers={"authorization": f"Bearer {API_TOKEN}"})
                captured.append(resp.text)
            resp = h.post(server.base_url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {CLOUD_KEY}"})
            captured.append(resp.text)
            captured.append(h.get(server.base_url + "/metrics").text)
            captured.append(h.get(server.base_url + "/health").text)
    server.stop()  # flushes the decision log
    captured += caplog.messages + [rec.getMessage() for rec in caplog.records]
    log_dir = tmp_path / "log"
    captured += [p.read_bytes().decode("latin-1") for p in log_dir.glob("part-*.parquet")]
    df = read_decision_log(log_dir)
    assert df.height == 6  # 3 served + the unknown model + the malformed and the unauthorised body (rejected rows)
    assert df["error"].to_list()[3:] == ["model_not_found", "BadRequest:messages[0].role", "invalid_api_key"]
    captured.append(df.write_ndjson())
    blob = "\n".join(captured)
    for secret in (CLOUD_KEY, API_TOKEN, ADMIN_TOKEN, "AKIAIOSFODNN7EXAMPLE", "hunter2hunter2", SIMPLE_PROMPT):
        assert secret not in blob, secret
    assert "router_rl_requests_total" in blob  # the metrics text was captured


def test_missing_credentials_fail_at_startup_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTER_RL_TEST_CLOUD_KEY", raising=False)
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", API_TOKEN)
    import yaml

    p = tmp_path / "router.yaml"
    p.write_text(yaml.safe_dump(router_config("http://127.0.0.1:1", "http://127.0.0.1:2")))
    with pytest.raises(ConfigError, match=r"providers\[1\]\.api_key_env: environment variable "
                                          r"ROUTER_RL_TEST_CLOUD_KEY is not set"):
        load_config(p)
    monkeypatch.setenv("ROUTER_RL_TEST_CLOUD_KEY", CLOUD_KEY)
    monkeypatch.delenv("ROUTER_RL_API_TOKENS")
    with pytest.raises(ConfigError, match=r"server.auth.tokens_env: environment variable ROUTER_RL_API_TOKENS"):
        load_config(p)


def test_sampling_fields_are_forwarded_to_the_chosen_model(backends: Backends) -> None:
    from router_rl.router.server import parse_chat_body

    inp, stream, usage = parse_chat_body(
        {"model": "router-rl/auto", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
         "top_p": 0.5, "seed": 7, "stream": True, "stream_options": {"include_usage": True}, "user": "qe-3"},
        {"x-request-id": "rid-1", "x-task-category": "unit"},
    )
    assert (stream, usage, inp.agent_id, inp.category, inp.request_id) == (True, True, "qe-3", "unit", "rid-1")
    assert inp.messages == [{"role": "user", "content": "hi"}]
    local, cloud = backends
    router = HybridRouter(parse_config(router_config(local.base_url, cloud.base_url)))
    ctx = asyncio.run(router._context(inp))
    req = router.chain.request_for(ctx, "small-local")
    asyncio.run(router.aclose())
    assert req.extra == {"top_p": 0.5, "seed": 7, "headers": {"x-request-id": "rid-1"}}
    assert req.timeout_s == 2.0  # local attempts are bounded by fallback.latency_threshold_s
