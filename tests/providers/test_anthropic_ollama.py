"""AnthropicProvider and OllamaProvider against the replay backend (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from _provider_helpers import CLOUD_MODEL, LOCAL_MODEL, faults, server_requests

from router_rl.providers import CompletionRequest, Provider, ProviderError, ProviderErrorKind, build_provider
from router_rl.providers.anthropic import AnthropicProvider
from router_rl.providers.ollama import OllamaProvider
from router_rl.replay.server import ReplayBackendServer


def anthropic(srv: ReplayBackendServer, **kw: Any) -> AnthropicProvider:
    cfg: dict[str, Any] = {"name": "anthropic", "kind": "anthropic", "base_url": srv.base_url, "location": "cloud",
                           "models": [{"model": CLOUD_MODEL, "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}],
                           "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.5}
    cfg.update(kw)
    p = build_provider(cfg, rng=np.random.default_rng(0))
    assert isinstance(p, AnthropicProvider)
    return p


def run(p: Provider, coro_fn: Any) -> Any:
    async def go() -> Any:
        try:
            return await coro_fn()
        finally:
            await p.close()

    return asyncio.run(go())


def msgs(task: str = "t1", model: str = CLOUD_MODEL, **kw: Any) -> CompletionRequest:
    return CompletionRequest(
        model,
        [{"role": "system", "content": "You are a QE agent."}, {"role": "user", "content": "go"}],
        extra={"headers": {"x-router-rl-task-id": task}},
        **kw,
    )


def test_anthropic_body_splits_system_prompt() -> None:
    p = build_provider({"name": "a", "kind": "anthropic", "base_url": "http://127.0.0.1:1", "location": "cloud"})
    body = p.build_body(msgs(stop=["END"], temperature=0.2), stream=True)  # type: ignore[attr-defined]
    assert body["system"] == "You are a QE agent."
    assert body["messages"] == [{"role": "user", "content": "go"}]
    assert body["max_tokens"] == 1024 and body["stop_sequences"] == ["END"] and body["stream"] is True


def test_anthropic_complete_usage_and_token_cost(replay: ReplayBackendServer) -> None:
    p = anthropic(replay)
    res = run(p, lambda: p.complete(msgs("t1")))
    assert res.content == "ok quality=0.8000 task=t1"
    assert res.usage.input_tokens == 100 and res.usage.output_tokens == 40
    assert res.finish_reason == "stop" and res.raw["stop_reason"] == "end_turn"
    assert p.cost(CLOUD_MODEL, res.usage, res.latency_s) == pytest.approx((100 * 3.0 + 40 * 15.0) / 1e6)
    assert server_requests(replay)[-1]["api"] == "anthropic"


def test_anthropic_stream(replay: ReplayBackendServer) -> None:
    p = anthropic(replay)

    async def go() -> list[Any]:
        return [c async for c in p.stream(msgs("t0"))]

    chunks = run(p, go)
    assert "".join(c.delta for c in chunks) == "ok quality=1.0000 task=t0"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 40
    assert chunks[-1].usage.input_tokens == 100 and chunks[-1].finish_reason == "stop"


def test_anthropic_429_and_5xx_use_anthropic_error_shape(replay: ReplayBackendServer) -> None:
    faults(replay, {"kind": "http_429", "api": "anthropic", "retry_after_s": 0.01})
    p = anthropic(replay)
    with pytest.raises(ProviderError) as ei:
        run(p, lambda: p.complete(msgs()))
    assert ei.value.kind == ProviderErrorKind.HTTP_429 and ei.value.attempts == 2
    assert "rate_limit_error" in str(ei.value)
    assert len(server_requests(replay)) == 2


@pytest.mark.parametrize(("kind", "after"), [("stall_before_first_token", False), ("stall_after_first_token", True)])
def test_anthropic_stream_stalls(replay: ReplayBackendServer, kind: str, after: bool) -> None:
    faults(replay, {"kind": kind, "delay_s": 3})
    p = anthropic(replay, max_retries=0)

    async def go() -> list[Any]:
        return [c async for c in p.stream(msgs(timeout_s=0.3))]

    with pytest.raises(ProviderError) as ei:
        run(p, go)
    assert ei.value.kind == ProviderErrorKind.STREAM_BROKEN and ei.value.after_first_token is after
    assert ei.value.retryable is (not after)


def test_anthropic_auth_error(replay: ReplayBackendServer, monkeypatch: pytest.MonkeyPatch) -> None:
    replay.backend._api_key = "right-key-123456"
    monkeypatch.setenv("RRL_TEST_ANTHROPIC_KEY", "wrong-key-654321")
    p = anthropic(replay, api_key_env="RRL_TEST_ANTHROPIC_KEY")
    with pytest.raises(ProviderError) as ei:
        run(p, lambda: p.complete(msgs()))
    assert ei.value.kind == ProviderErrorKind.AUTH and not ei.value.retryable and ei.value.attempts == 1


def ollama(srv: ReplayBackendServer, **kw: Any) -> OllamaProvider:
    cfg: dict[str, Any] = {"name": "ollama", "kind": "ollama", "base_url": srv.base_url, "models": [LOCAL_MODEL],
                           "gpu_usd_per_hour": 1.8, "options": {"keep_alive": "10m"}}
    cfg.update(kw)
    p = build_provider(cfg)
    assert isinstance(p, OllamaProvider)
    return p


def test_ollama_keep_alive_list_models_and_health(replay: ReplayBackendServer) -> None:
    p = ollama(replay)

    async def go() -> Any:
        res = await p.complete(msgs("t0", model=LOCAL_MODEL))
        return res, await p.list_models(), await p.version(), await p.health()

    res, models, version, health = run(p, go)
    assert res.content.startswith("ok quality=0.9000")
    assert server_requests(replay)[-1]["keep_alive"] == "10m"
    assert models == [LOCAL_MODEL, CLOUD_MODEL]
    assert version.startswith("0.0.0")
    assert health.ok and "ollama" in health.detail
    assert p.cost(LOCAL_MODEL, res.usage, 2.0) == pytest.approx(2.0 * 1.8 / 3600)


def test_ollama_health_reports_models_not_pulled(replay: ReplayBackendServer) -> None:
    p = ollama(replay, models=[LOCAL_MODEL, "llama-not-here"])
    health = run(p, p.health)
    assert not health.ok and "llama-not-here" in health.detail


def test_ollama_v1_suffix_is_accepted(replay: ReplayBackendServer) -> None:
    p = ollama(replay, base_url=replay.base_url + "/v1")
    assert p.native_root == replay.base_url and p.api_root == replay.base_url + "/v1"
    assert run(p, p.list_models) == [LOCAL_MODEL, CLOUD_MODEL]
