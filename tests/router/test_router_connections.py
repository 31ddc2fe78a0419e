"""Connections and rows: idle keep-alive connections outlive the clients' pool expiry; every request gets a row.

The intermittent client ``ReadError`` under load (about 1 per 2k requests, no decision-log row, no
server log line) was the keep-alive race: uvicorn closed idle connections after 5 s, exactly the
idle expiry of httpx's pool, so a client could send on a connection the server was closing at
that instant. The router now keeps idle connections 75 s (``server.keep_alive_s``), so the client
always retires a connection first.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import httpx
import pytest
from _router_helpers import API_TOKEN, SIMPLE_PROMPT, router_config

from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import ServerConfig, parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
BODY = json.dumps({"model": "router-rl/auto", "messages": [{"role": "user", "content": SIMPLE_PROMPT}]}).encode()
HEADERS = {"authorization": f"Bearer {API_TOKEN}", "content-type": "application/json"}
HTTPX_POOL_EXPIRY_S = 5.0  # httpx.Limits().keepalive_expiry


def test_server_keep_alive_outlives_the_httpx_pool_expiry() -> None:
    assert httpx.Limits().keepalive_expiry == HTTPX_POOL_EXPIRY_S
    assert ServerConfig().keep_alive_s > 2 * HTTPX_POOL_EXPIRY_S


@pytest.mark.slow
def test_an_idle_connection_is_still_served_after_the_client_pool_expiry(backends: Backends) -> None:
    local, cloud = backends
    router = HybridRouter.from_config(parse_config(router_config(local.base_url, cloud.base_url)))
    with RouterServer(build_server_app(router)) as srv:
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("POST", "/v1/chat/completions", body=BODY, headers=HEADERS)
        assert c.getresponse().read() and c.sock is not None
        sock = c.sock
        time.sleep(HTTPX_POOL_EXPIRY_S + 1.0)  # past uvicorn's old 5 s default
        c.request("POST", "/v1/chat/completions", body=BODY, headers=HEADERS)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["object"] == "chat.completion"
        assert c.sock is sock  # the same TCP connection served it
        c.close()


def test_every_request_that_reached_the_router_gets_a_decision_log_row(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url,
                                     logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60}))
    router = HybridRouter.from_config(cfg)
    secret = "AKIAIOSFODNN7EXAMPLE"
    with RouterServer(build_server_app(router)) as srv, httpx.Client(base_url=srv.base_url, timeout=10) as h:
        url = "/v1/chat/completions"
        codes = [
            h.post(url, content=BODY, headers=HEADERS).status_code,
            h.post(url, content=b"{nope", headers={**HEADERS, "x-request-id": "bad-json"}).status_code,
            h.post(url, content=BODY, headers={"content-type": "application/json"}).status_code,
            h.post(url, json={"model": "router-rl/auto", "messages": [], secret: 1}, headers=HEADERS).status_code,
            h.post(url, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                   headers=HEADERS).status_code,
            h.post(url, content=BODY, headers={**HEADERS, "x-request-id": secret}).status_code,
        ]
    assert codes == [200, 400, 401, 400, 404, 200]
    df = read_decision_log(tmp_path / "log")
    assert df.height == 6
    assert df["error"].to_list() == [None, "BadRequest", "invalid_api_key", "BadRequest", "model_not_found", None]
    assert "bad-json" in df["request_id"].to_list()
    assert secret not in json.dumps(df.to_dicts(), default=str)
