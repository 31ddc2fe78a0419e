"""The router's aiohttp upstream pool answers, fails and streams exactly as the providers' httpx pool.

Every scenario runs against a real HTTP server on 127.0.0.1 twice: with the providers built by
``build_router_providers(client="httpx")`` (httpx's own pool, the reference) and
``client="aiohttp"`` (the router's default); results, errors (kind, HTTP status, Retry-After,
detail) and what the server received must be the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from router_rl.core.asgi import ThreadedASGIServer
from router_rl.providers._http import HTTPProvider, collect_stream
from router_rl.providers.base import CompletionRequest, Provider, ProviderConfig, ProviderError, ProviderErrorKind
from router_rl.router.config import RouterConfig
from router_rl.router.upstream import AiohttpPostMixin, AiohttpTransport, build_router_providers
from router_rl.traces.catalog import ModelCatalog

MODEL = "m-local"
KEY_ENV = "ROUTER_RL_TEST_UPSTREAM_KEY"


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=16)  # answers gzip-encoded to a client that accepts it

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        scenario = body["messages"][0]["content"]
        client = request.scope["client"]
        echo = {
            "port": client[1] if client else None,
            "sha": hashlib.sha256(raw).hexdigest(),
            "headers": {k: request.headers.get(k) for k in ("authorization", "content-type", "x-task-id", "accept",
                                                              "accept-encoding", "user-agent")},
        }
        if body.get("stream"):
            if scenario == "stream-broken":
                async def broken() -> Any:
                    yield b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n'
                return StreamingResponse(broken(), media_type="text/event-stream")

            async def events() -> Any:
                for piece in ("hel", "lo"):
                    yield ("data: " + json.dumps({"choices": [{"delta": {"content": piece}}]}) + "\n\n").encode()
                yield b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
                yield b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        if scenario == "ok":
            return JSONResponse({"model": MODEL, "choices": [{"message": {"content": json.dumps(echo)},
                                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 7, "completion_tokens": 5}})
        if scenario == "500":
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503,
                                headers={"retry-after": "7"})
        if scenario == "429":
            return JSONResponse({"error": {"message": "slow down", "code": "rate_limit"}}, status_code=429,
                                headers={"retry-after": "3"})
        if scenario == "context":
            return JSONResponse({"error": {"message": "maximum context length exceeded"}}, status_code=400)
        if scenario == "401":
            return PlainTextResponse("no such key", status_code=401)
        if scenario == "not-json":
            return PlainTextResponse("<html>oops</html>")
        if scenario == "array":
            return JSONResponse([1, 2])
        if scenario == "no-choices":
            return JSONResponse({"model": MODEL})
        if scenario == "slow":
            await asyncio.sleep(3.0)
            return JSONResponse({})
        raise AssertionError(scenario)

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedASGIServer]:
    with ThreadedASGIServer(_app(), timeout_keep_alive=30) as srv:
        yield srv


def _providers(base_url: str, client: str, monkeypatch: pytest.MonkeyPatch, **cfg: Any) -> Provider:
    monkeypatch.setenv(KEY_ENV, "sk-upstream-test-0123456789")
    pc = ProviderConfig(name="local", kind="openai_compatible", base_url=base_url, location="local",
                        api_key_env=KEY_ENV, max_retries=0, timeout_s=cfg.pop("timeout_s", 5.0), models=[MODEL], **cfg)
    out = build_router_providers([pc], catalog=ModelCatalog([]), rng=np.random.default_rng(0),
                                 client=client)  # type: ignore[arg-type]
    return out["local"]


def _req(scenario: str, **kw: Any) -> CompletionRequest:
    return CompletionRequest(model=MODEL, messages=[{"role": "user", "content": scenario}], max_tokens=8,
                             extra={"headers": {"x-task-id": "t-7"}}, **kw)


def _outcome(p: Provider, scenario: str, **kw: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            res = await p.complete(_req(scenario, **kw))
        except ProviderError as e:
            return {"kind": e.kind, "status": e.status, "retry_after_s": e.retry_after_s, "detail": e.detail,
                    "retryable": e.retryable}
        finally:
            await p.close()
        echo = json.loads(res.content)
        echo.pop("port")
        return {"echo": echo, "usage": (res.usage.input_tokens, res.usage.output_tokens, res.usage.estimated),
                "finish": res.finish_reason, "model": res.model}

    return asyncio.run(go())


def test_router_builds_http_providers_on_the_aiohttp_pool(server: ThreadedASGIServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _providers(server.base_url, "aiohttp", monkeypatch)
    ref = _providers(server.base_url, "httpx", monkeypatch)
    assert isinstance(fast, AiohttpPostMixin) and isinstance(fast, HTTPProvider)
    assert isinstance(fast._transport, AiohttpTransport)
    assert not isinstance(ref, AiohttpPostMixin) and ref._transport is None
    assert type(fast).__name__ == type(ref).__name__ == "OpenAICompatibleProvider"
    assert RouterConfig.model_fields["upstream_client"].default == "aiohttp"


@pytest.mark.parametrize("scenario", ["ok", "500", "429", "context", "401", "not-json", "array", "no-choices"])
def test_answers_and_errors_are_those_of_httpx(server: ThreadedASGIServer, monkeypatch: pytest.MonkeyPatch,
                                               scenario: str) -> None:
    ref = _outcome(_providers(server.base_url, "httpx", monkeypatch), scenario)
    fast = _outcome(_providers(server.base_url, "aiohttp", monkeypatch), scenario)
    assert fast == ref
    expected = {"ok": None, "500": ProviderErrorKind.HTTP_5XX, "429": ProviderErrorKind.HTTP_429,
                "context": ProviderErrorKind.CONTEXT_TOO_LONG, "401": ProviderErrorKind.AUTH,
                "not-json": ProviderErrorKind.MALFORMED, "array": ProviderErrorKind.MALFORMED,
                "no-choices": ProviderErrorKind.MALFORMED}[scenario]
    if expected is None:  # the server received the same bytes and headers from both clients
        assert fast["echo"]["headers"] == {"authorization": "Bearer sk-upstream-test-0123456789",
                                           "content-type": "application/json", "x-task-id": "t-7",
                                           "accept": "application/json", "accept-encoding": "gzip, deflate",
                                           "user-agent": ref["echo"]["headers"]["user-agent"]}
        assert fast["usage"] == (7, 5, False) and fast["finish"] == "stop"
    else:
        assert fast["kind"] == expected
    if scenario in ("500", "429"):
        assert fast["retry_after_s"] == {"500": 7.0, "429": 3.0}[scenario]


def test_read_timeout_and_refused_connection_map_like_httpx(server: ThreadedASGIServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for client in ("httpx", "aiohttp"):
        out = _outcome(_providers(server.base_url, client, monkeypatch), "slow", timeout_s=0.3)
        assert out["kind"] == ProviderErrorKind.TIMEOUT and out["retryable"], client
        assert out["detail"].startswith("ReadTimeout"), (client, out["detail"])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for client in ("httpx", "aiohttp"):
        out = _outcome(_providers(dead, client, monkeypatch), "ok")
        assert out["kind"] == ProviderErrorKind.CONNECTION and out["detail"].startswith("ConnectError"), (client, out)


def test_streams_are_those_of_httpx(server: ThreadedASGIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    async def stream(p: Provider, scenario: str) -> Any:
        try:
            res = await collect_stream(p, _req(scenario))
            return res.content, (res.usage.input_tokens, res.usage.output_tokens), res.finish_reason
        except ProviderError as e:
            return e.kind, e.after_first_token
        finally:
            await p.close()

    for scenario, expected in (("stream-ok", ("hello", (3, 2), "stop")),
                               ("stream-broken", (ProviderErrorKind.STREAM_BROKEN, True))):
        got = [asyncio.run(stream(_providers(server.base_url, c, monkeypatch), scenario)) for c in ("httpx", "aiohttp")]
        assert got == [expected, expected], scenario


def test_pool_reuses_a_connection_and_retires_it_when_idle(server: ThreadedASGIServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    p = _providers(server.base_url, "aiohttp", monkeypatch, keepalive_expiry_s=0.2)

    async def go() -> tuple[list[int], int]:
        ports = [json.loads((await p.complete(_req("ok"))).content)["port"] for _ in range(5)]
        await asyncio.sleep(0.6)  # idle beyond keepalive_expiry_s: the pooled connection is closed
        later = json.loads((await p.complete(_req("ok"))).content)["port"]
        await p.close()
        return ports, later

    ports, later = asyncio.run(go())
    assert len(set(ports)) == 1  # keep-alive: one connection for five sequential calls
    assert later != ports[0]


def test_cancelled_call_leaves_the_pool_usable_and_close_reopens(server: ThreadedASGIServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    p = _providers(server.base_url, "aiohttp", monkeypatch)

    async def go() -> list[str]:
        task = asyncio.create_task(p.complete(_req("slow")))
        await asyncio.sleep(0.2)
        task.cancel()  # a lost hedge: the half-answered connection must never be reused
        with pytest.raises(asyncio.CancelledError):
            await task
        first = (await p.complete(_req("ok"))).finish_reason
        await p.close()
        assert p._transport._session is None
        second = (await p.complete(_req("ok"))).finish_reason  # a closed provider opens a new pool
        await p.close()
        return [str(first), str(second)]

    assert asyncio.run(go()) == ["stop", "stop"]


def test_env_proxy_is_read_once_per_host_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    t = AiohttpTransport(max_connections=4, keepalive_expiry_s=1.0)
    assert t.proxy_for("http://api.example.com/v1/chat/completions") == "http://proxy.invalid:3128"
    assert t.proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None
    monkeypatch.delenv("HTTP_PROXY")
    assert t.proxy_for("http://api.example.com/v1/chat/completions") == "http://proxy.invalid:3128"  # cached
    assert AiohttpTransport(max_connections=4, keepalive_expiry_s=1.0).proxy_for(
        "http://api.example.com/v1/chat/completions") is None


def test_the_server_opens_its_pools_and_loads_its_kernels_before_the_first_request(
        server: ThreadedASGIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No live request pays the upstream pool's TLS context / session or the privacy kernel's load."""
    from router_rl.features.privacy_prefilter import _kernel
    from router_rl.router.config import parse_config
    from router_rl.router.engine import HybridRouter
    from router_rl.router.server import RouterServer, build_server_app

    monkeypatch.setenv(KEY_ENV, "k")
    cfg = parse_config({
        "providers": [{"name": "local", "kind": "openai_compatible", "base_url": server.base_url, "location": "local",
                       "api_key_env": KEY_ENV, "max_retries": 0, "models": [MODEL]}],
        "tiers": {"simple": MODEL, "moderate": MODEL, "complex": MODEL, "very_complex": MODEL},
        "fallback": {"emergency_cloud": False},
        "logging": {"decision_log_dir": str(tmp_path / "log")},
        "server": {"auth": {"enabled": False, "admin_enabled": False}},
    })
    router = HybridRouter.from_config(cfg)
    transport = router.providers["local"]._transport  # type: ignore[attr-defined]
    assert isinstance(transport, AiohttpTransport) and transport._session is None
    with RouterServer(build_server_app(router)):
        session = transport._session
        assert session is not None and not session.closed  # opened by the server's start-up
        kernel = _kernel()
        assert kernel is None or kernel.signatures  # numba: compiled (or loaded) before any request
