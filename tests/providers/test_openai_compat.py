"""OpenAICompatibleProvider against the real replay backend over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from _provider_helpers import LOCAL_MODEL, faults, server_requests

from router_rl.providers import CompletionRequest, ProviderError, ProviderErrorKind, build_provider
from router_rl.providers._http import collect_stream
from router_rl.providers.openai_compat import OpenAICompatibleProvider
from router_rl.replay.server import ReplayBackendServer


def provider(srv: ReplayBackendServer, **kw: Any) -> OpenAICompatibleProvider:
    cfg: dict[str, Any] = {
        "name": "local",
        "kind": "openai_compatible",
        "base_url": srv.base_url + "/v1",
        "models": [LOCAL_MODEL],
        "gpu_usd_per_hour": 3.6,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.5,
        "timeout_s": 5.0,
    }
    cfg.update(kw)
    p = build_provider(cfg, rng=np.random.default_rng(0))
    assert isinstance(p, OpenAICompatibleProvider)
    return p


def req(task: str | None = "t0", content: str = "hello", **kw: Any) -> CompletionRequest:
    extra = {"headers": {"x-router-rl-task-id": task}} if task else {}
    return CompletionRequest(LOCAL_MODEL, [{"role": "user", "content": content}], extra=extra, **kw)


def call(p: OpenAICompatibleProvider, r: CompletionRequest) -> Any:
    async def go() -> Any:
        try:
            return await p.complete(r)
        finally:
            await p.close()

    return asyncio.run(go())


def stream_all(p: OpenAICompatibleProvider, r: CompletionRequest) -> tuple[list[Any], ProviderError | None]:
    chunks: list[Any] = []

    async def go() -> ProviderError | None:
        try:
            async for ch in p.stream(r):
                chunks.append(ch)
        except ProviderError as e:
            return e
        finally:
            await p.close()
        return None

    return chunks, asyncio.run(go())


def expect_error(p: OpenAICompatibleProvider, r: CompletionRequest) -> ProviderError:
    with pytest.raises(ProviderError) as ei:
        call(p, r)
    return ei.value


def test_complete_returns_recorded_outcome_usage_and_local_cost(replay: ReplayBackendServer) -> None:
    p = provider(replay)
    res = call(p, req("t0"))
    assert res.content.startswith("ok quality=0.9000 task=t0")
    assert res.usage.input_tokens == 100 and res.usage.output_tokens == 20
    assert res.finish_reason == "stop"
    assert res.latency_s >= 0.4 * 0.01  # recorded latency x time_scale
    assert res.raw is not None and res.raw["router_rl"]["quality"] == pytest.approx(0.9)
    # local: measured latency as GPU-seconds x 3.6 USD/h
    assert p.cost(LOCAL_MODEL, res.usage, res.latency_s) == pytest.approx(res.latency_s * 3.6 / 3600)
    res1 = call(p, req("t1"))
    assert res1.content.startswith("fail quality=0.2000")


def test_task_found_by_prompt_text_without_header(replay: ReplayBackendServer) -> None:
    res = call(provider(replay), req(None, content="Write a unit test for function number t1"))
    assert "task=t1" in res.content
    assert server_requests(replay)[-1]["match"] == "prompt"


def test_stream_yields_tokens_then_usage(replay: ReplayBackendServer) -> None:
    chunks, err = stream_all(provider(replay), req("t0"))
    assert err is None
    text = "".join(c.delta for c in chunks)
    assert text == "ok quality=0.9000 task=t0"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 20
    assert chunks[-1].finish_reason == "stop"
    assert server_requests(replay)[-1]["include_usage"] is True


def test_stream_without_include_usage_estimates_tokens(replay: ReplayBackendServer) -> None:
    p = provider(replay, options={"include_usage": False})
    chunks, err = stream_all(p, req("t0"))
    assert err is None
    assert server_requests(replay)[-1]["include_usage"] is False
    u = chunks[-1].usage
    assert u is not None and u.output_tokens == len("ok quality=0.9000 task=t0") // 4 + 1


def test_collect_stream_measures_ttft(replay: ReplayBackendServer) -> None:
    p = provider(replay)

    async def go() -> Any:
        try:
            return await collect_stream(p, req("t0"))
        finally:
            await p.close()

    res = asyncio.run(go())
    assert res.ttft_s is not None and 0 < res.ttft_s <= res.latency_s
    assert res.usage.input_tokens == 100


def test_5xx_is_retried_until_success(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_5xx", "count": 2})
    p = provider(replay)
    res = call(p, req("t0"))
    assert res.content.startswith("ok")
    log = server_requests(replay)
    assert [e["fault"] for e in log] == ["http_5xx", "http_5xx", None]
    assert len(p.backoff_log) == 2
    assert 0 <= p.backoff_log[0] <= 0.01 and 0 <= p.backoff_log[1] <= 0.02  # full jitter caps


def test_5xx_gives_up_after_max_retries(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_5xx", "status": 502})
    e = expect_error(provider(replay, max_retries=3), req("t0"))
    assert e.kind == ProviderErrorKind.HTTP_5XX and e.status == 502 and e.retryable and e.attempts == 4
    assert len(server_requests(replay)) == 4


def test_429_retry_after_is_honoured(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_429", "count": 1, "retry_after_s": 0.2})
    p = provider(replay)
    t0 = time.perf_counter()
    res = call(p, req("t0"))
    assert time.perf_counter() - t0 >= 0.2
    assert res.content.startswith("ok")
    assert p.backoff_log == [0.2]
    assert len(server_requests(replay)) == 2


def test_429_with_retry_after_beyond_budget_fails_fast(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_429", "retry_after_s": 30})
    p = provider(replay)
    e = expect_error(p, req("t0"))
    assert e.kind == ProviderErrorKind.HTTP_429 and e.retry_after_s == 30 and e.retryable and e.attempts == 1
    assert len(server_requests(replay)) == 1 and p.backoff_log == []


@pytest.mark.parametrize(
    ("rule", "kind"),
    [
        ({"kind": "http_4xx", "status": 422}, ProviderErrorKind.HTTP_4XX),
        ({"kind": "http_4xx", "code": "context_length_exceeded"}, ProviderErrorKind.CONTEXT_TOO_LONG),
        ({"kind": "http_4xx", "status": 401}, ProviderErrorKind.AUTH),
        ({"kind": "malformed"}, ProviderErrorKind.MALFORMED),
    ],
)
def test_non_retryable_errors_are_not_retried(
    replay: ReplayBackendServer, rule: dict[str, Any], kind: ProviderErrorKind
) -> None:
    faults(replay, rule)
    e = expect_error(provider(replay), req("t0"))
    assert e.kind == kind and not e.retryable and e.attempts == 1
    assert len(server_requests(replay)) == 1


def test_connection_reset_is_retried(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "reset", "count": 1})
    res = call(provider(replay), req("t0"))
    assert res.content.startswith("ok")
    assert [e["fault"] for e in server_requests(replay)] == ["reset", None]


def test_connection_reset_every_time_maps_to_connection(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "reset"})
    e = expect_error(provider(replay, max_retries=1), req("t0"))
    assert e.kind == ProviderErrorKind.CONNECTION and e.retryable and e.attempts == 2
    assert len(server_requests(replay)) == 2


def test_timeout_is_retried_then_reported(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "timeout", "delay_s": 3})
    e = expect_error(provider(replay, max_retries=1), req("t0", timeout_s=0.2))
    # the client's own per-call timeout fired: no HTTP response was received (the backend answers
    # 504 "timeout" only after its 3 s delay, which would set ``status``)
    assert e.status is None
    assert e.kind == ProviderErrorKind.TIMEOUT and e.attempts == 2
    assert len(server_requests(replay)) == 2


def test_recorded_error_is_replayed(replay: ReplayBackendServer) -> None:
    # t2 x local model was recorded as http_429 (no Retry-After): retried, then reported
    e = expect_error(provider(replay, max_retries=1), req("t2"))
    assert e.kind == ProviderErrorKind.HTTP_429 and e.status == 429 and e.attempts == 2


def test_unknown_model_is_a_4xx(replay: ReplayBackendServer) -> None:
    p = provider(replay)
    r = CompletionRequest("nope", [{"role": "user", "content": "x"}])
    e = expect_error(p, r)
    assert e.kind == ProviderErrorKind.HTTP_4XX and e.status == 404 and "model_not_found" in str(e)


def test_stream_stall_before_first_token_is_retryable(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "stall_before_first_token", "delay_s": 3, "count": 1})
    chunks, err = stream_all(provider(replay), req("t0", timeout_s=0.3))
    assert err is None  # retried on a fresh connection, second attempt succeeded
    assert "".join(c.delta for c in chunks) == "ok quality=0.9000 task=t0"
    assert [e["fault"] for e in server_requests(replay)] == ["stall_before_first_token", None]


def test_stream_stall_before_first_token_reported(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "stall_before_first_token", "delay_s": 3})
    chunks, err = stream_all(provider(replay, max_retries=1), req("t0", timeout_s=0.3))
    assert err is not None
    assert err.kind == ProviderErrorKind.STREAM_BROKEN and not err.after_first_token and err.retryable
    assert err.attempts == 2 and len(server_requests(replay)) == 2
    assert all(c.delta == "" for c in chunks)


@pytest.mark.parametrize("kind", ["stall_after_first_token", "reset_after_first_token"])
def test_stream_broken_after_first_token_is_not_retried(replay: ReplayBackendServer, kind: str) -> None:
    faults(replay, {"kind": kind, "delay_s": 3})
    chunks, err = stream_all(provider(replay), req("t0", timeout_s=0.3))
    assert err is not None
    assert err.kind == ProviderErrorKind.STREAM_BROKEN and err.after_first_token and not err.retryable
    assert "after first token" in str(err)
    assert "".join(c.delta for c in chunks) == "ok"
    assert len(server_requests(replay)) == 1


def test_stream_malformed_event(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "malformed", "stream": True})
    _, err = stream_all(provider(replay), req("t0"))
    assert err is not None and err.kind == ProviderErrorKind.MALFORMED and err.attempts == 1


def test_stream_http_error_before_start_is_retried(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_5xx", "count": 1})
    chunks, err = stream_all(provider(replay), req("t0"))
    assert err is None and "".join(c.delta for c in chunks).startswith("ok")
    assert len(server_requests(replay)) == 2


def test_embeddings_are_deterministic(replay: ReplayBackendServer) -> None:
    p = provider(replay)

    async def go() -> list[list[float]]:
        try:
            return await p.embed(["a", "b", "a"])
        finally:
            await p.close()

    v = asyncio.run(go())
    assert len(v) == 3 and len(v[0]) == 16
    assert v[0] == v[2] and v[0] != v[1]
    assert np.linalg.norm(v[1]) == pytest.approx(1.0)


def test_health_and_list_models(replay: ReplayBackendServer) -> None:
    p = provider(replay)

    async def go() -> Any:
        try:
            return await p.health(), await p.list_models()
        finally:
            await p.close()

    h, models = asyncio.run(go())
    assert h.ok and h.detail == "2 models" and models == [LOCAL_MODEL, "claude-cloud"]


def test_health_of_a_dead_server_is_not_ok() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = build_provider({"name": "dead", "base_url": f"http://127.0.0.1:{port}", "connect_timeout_s": 0.5})

    async def go() -> Any:
        try:
            return await p.health()
        finally:
            await p.close()

    h = asyncio.run(go())
    assert not h.ok and "connection" in h.detail


def test_backoff_jitter_is_seeded(replay: ReplayBackendServer) -> None:
    logs = []
    for _ in range(2):
        faults(replay, {"kind": "http_5xx", "count": 2})
        p = provider(replay, backoff_base_s=0.02)
        call(p, req("t0"))
        logs.append(p.backoff_log)
    assert logs[0] == logs[1] and len(logs[0]) == 2
