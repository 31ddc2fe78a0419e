"""The replay backend's Ollama API checked with the official ``ollama`` client, and the router's Ollama
provider against that same backend (no real Ollama can be installed here: the official client is the
reference of the wire format)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import ollama
import polars as pl
import pytest

from router_rl.providers.base import CompletionRequest, ProviderConfig, build_provider
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog, ModelSpec

MODELS = ("qwen2.5-coder:7b", "qwen2.5-coder:32b")


@pytest.fixture(scope="module")
def srv() -> Iterator[ReplayBackendServer]:
    frame = pl.DataFrame([{"task_id": "t0", "model": m, "quality": 1.0, "cost_usd": 0.0, "latency_s": 0.2,
                           "input_tokens": 31, "output_tokens": 9, "prompt": "Write tests for the cart."}
                          for m in MODELS])
    b = ReplayBackend.from_frame(frame, catalog=ModelCatalog([ModelSpec(m, "ollama", "local") for m in MODELS]),
                                 time_scale=0.0)
    with ReplayBackendServer(b) as s:
        yield s


def test_official_client_lists_chats_and_streams(srv: ReplayBackendServer) -> None:
    srv.backend.log.clear()
    c = ollama.Client(host=srv.base_url)
    assert sorted(m.model for m in c.list().models) == sorted(MODELS)
    msg = [{"role": "user", "content": "Write tests for the cart."}]
    r = c.chat(model=MODELS[0], messages=msg, stream=False, keep_alive="30m")
    assert r.done and r.message.role == "assistant" and r.message.content
    assert r.prompt_eval_count == 31 and r.eval_count == 9
    parts = list(c.chat(model=MODELS[1], messages=msg, stream=True))
    assert parts[-1].done and parts[-1].eval_count == 9 and not any(p.done for p in parts[:-1])
    whole = c.chat(model=MODELS[1], messages=msg, stream=False)
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert [e["keep_alive"] for e in srv.backend.log] == ["30m", None, None]
    with pytest.raises(ollama.ResponseError) as ei:
        c.chat(model="not-served", messages=msg, stream=False)
    assert ei.value.status_code == 404 and "not found" in str(ei.value)


def test_router_ollama_provider_against_the_same_backend(srv: ReplayBackendServer) -> None:
    srv.backend.log.clear()
    prov = build_provider(ProviderConfig(name="ollama", kind="ollama", base_url=srv.base_url + "/v1",
                                         location="local", options={"keep_alive": "30m"},
                                         models=[{"model": m} for m in MODELS]))

    async def go() -> tuple[list[str], str, bool]:
        try:
            models = await prov.list_models()
            msg = [{"role": "user", "content": "Write tests for the cart."}]
            res = await prov.complete(CompletionRequest(model=MODELS[0], messages=msg))
            health = await prov.health()
            return models, res.content, health.ok
        finally:
            await prov.close()

    models, content, ok = asyncio.run(go())
    assert sorted(models) == sorted(MODELS) and content and ok
    assert srv.backend.log[-1]["keep_alive"] == "30m"
