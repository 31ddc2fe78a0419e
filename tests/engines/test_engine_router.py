"""The router's OpenAI-compatible provider against a real llama.cpp server (conformance).

Real processes on 127.0.0.1 only: the llama.cpp engine, a replay backend standing in for a second
local server (the fallback), and the router's HTTP server driven with the OpenAI SDK.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import polars as pl
import pytest
from _engine_helpers import ADAPTED, BASE, engine_models

from router_rl.engines.llamacpp import LlamaCppServer
from router_rl.engines.tiny import TinyEngineModel
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.decision_log import read_decision_log

TOKEN = "tok-engine-test-7f3e"
GPU_USD_PER_HOUR = 1.8
BACKUP = "backup-local"


@pytest.fixture(scope="module")
def backup() -> Iterator[ReplayBackendServer]:
    frame = pl.DataFrame({"task_id": ["t0"], "model": [BACKUP], "quality": [1.0], "cost_usd": [0.0],
                          "latency_s": [0.01], "input_tokens": [10], "output_tokens": [5], "prompt": ["x"]})
    b = ReplayBackend.from_frame(frame, catalog=ModelCatalog([ModelSpec(BACKUP, "backup", "local")]), time_scale=0.0)
    with ReplayBackendServer(b) as srv:
        yield srv


def router_cfg(engine_url: str, backup_url: str, log_dir: Path, *, models: tuple[str, ...] = (BASE,),
               timeout_s: float = 20.0) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "llamacpp", "kind": "openai_compatible", "base_url": engine_url, "location": "local",
             "gpu_usd_per_hour": GPU_USD_PER_HOUR, "max_retries": 0, "timeout_s": timeout_s,
             "models": [{"model": m, "context_window": 256} for m in models]},
            {"name": "backup", "kind": "openai_compatible", "base_url": backup_url, "location": "local",
             "max_retries": 0, "timeout_s": 5.0, "models": [{"model": BACKUP}]},
        ],
        "tiers": {"simple": BASE, "moderate": BASE, "complex": BASE, "very_complex": BASE},
        "fallback": {"emergency_cloud": False, "latency_threshold_s": timeout_s},
        "logging": {"decision_log_dir": str(log_dir), "flush_interval_s": 0.05},
    }


class Rig:
    """The router over the engine and the backup, as the agents see it."""

    def __init__(self, srv: RouterServer, log_dir: Path, router: HybridRouter) -> None:
        self.srv, self.log_dir, self.router = srv, log_dir, router
        self.client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=TOKEN, max_retries=0, timeout=60)

    def rows(self) -> pl.DataFrame:
        asyncio.run(asyncio.sleep(0.3))  # flush interval
        return read_decision_log(self.log_dir)


def _rig(engine_url: str, backup: ReplayBackendServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         **kw: Any) -> Iterator[Rig]:
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", TOKEN)
    monkeypatch.setenv("ROUTER_RL_ADMIN_TOKENS", TOKEN + "-admin")
    backup.backend.log.clear()
    backup.backend.faults.clear()
    log_dir = tmp_path / "log"
    router = HybridRouter.from_config(parse_config(router_cfg(engine_url, backup.base_url, log_dir, **kw)))
    with RouterServer(build_server_app(router)) as srv:
        yield Rig(srv, log_dir, router)


@pytest.fixture
def rig(engine: LlamaCppServer, backup: ReplayBackendServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    yield from _rig(engine.base_url, backup, tmp_path, monkeypatch)


def _direct(engine: LlamaCppServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{engine.base_url}/chat/completions", json={"model": BASE, **body}, timeout=60)
    r.raise_for_status()
    return dict(r.json())


MSG = [{"role": "user", "content": "Write pytest tests for parse_date()"}]


def test_non_stream_through_the_router_matches_the_engine(engine: LlamaCppServer, rig: Rig) -> None:
    direct = _direct(engine, messages=MSG, max_tokens=12, temperature=0.0)
    r = rig.client.chat.completions.create(model=BASE, messages=MSG, max_tokens=12, temperature=0.0)  # type: ignore[arg-type]
    assert r.model == BASE
    assert r.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert r.usage is not None
    assert r.usage.prompt_tokens == direct["usage"]["prompt_tokens"] > 5
    assert r.usage.completion_tokens == direct["usage"]["completion_tokens"] <= 12
    row = rig.rows().row(0, named=True)
    assert row["served_model"] == BASE and row["fallback_used"] is False
    assert row["input_tokens"] == r.usage.prompt_tokens and row["output_tokens"] == r.usage.completion_tokens
    assert row["usage_estimated"] is False  # the engine's own counts
    # a local call costs its measured GPU-seconds (the engine call's wall time, within the request's
    # latency) at the provider's GPU price
    full_price = row["latency_s"] * GPU_USD_PER_HOUR / 3600
    assert 0.3 * full_price < row["cost_usd"] <= full_price


def test_stream_chunks_done_and_usage(engine: LlamaCppServer, rig: Rig) -> None:
    direct = _direct(engine, messages=MSG, max_tokens=10, temperature=0.0)
    with httpx.stream("POST", rig.srv.base_url + "/v1/chat/completions", timeout=60,
                      headers={"authorization": f"Bearer {TOKEN}"},
                      json={"model": BASE, "messages": MSG, "max_tokens": 10, "temperature": 0.0, "stream": True,
                            "stream_options": {"include_usage": True}}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [__import__("json").loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    assert text == direct["choices"][0]["message"]["content"]
    # llama-cpp-python 0.3.36 streams no usage chunk (it ignores stream_options): the router's usage
    # is its own estimate, and says so
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["estimated"] is True and usage[-1]["completion_tokens"] > 0
    row = rig.rows().row(0, named=True)
    assert row["usage_estimated"] is True
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] in ("length", "stop")


def test_max_tokens_and_stop_sequences_reach_the_engine(engine: LlamaCppServer, rig: Rig) -> None:
    full = _direct(engine, messages=MSG, max_tokens=24, temperature=0.0)["choices"][0]["message"]["content"]
    assert len(full) >= 6
    stop = full[3:6]
    r = rig.client.chat.completions.create(model=BASE, messages=MSG, max_tokens=24, temperature=0.0,  # type: ignore[arg-type]
                                           stop=[stop])
    out = r.choices[0].message.content or ""
    assert stop not in out and full.startswith(out) and len(out) < len(full)
    assert r.choices[0].finish_reason == "stop"
    r = rig.client.chat.completions.create(model=BASE, messages=MSG, max_tokens=3, temperature=0.0)  # type: ignore[arg-type]
    assert r.usage is not None and r.usage.completion_tokens <= 3 and r.choices[0].finish_reason == "length"


def test_prompt_over_the_context_window_falls_back_with_the_engines_reason(engine: LlamaCppServer, rig: Rig,
                                                                           backup: ReplayBackendServer) -> None:
    long = [{"role": "user", "content": "check the flaky test " * 400}]
    r = httpx.post(f"{engine.base_url}/chat/completions", json={"model": BASE, "messages": long}, timeout=60)
    assert r.status_code == 400  # the engine's own refusal
    resp = rig.client.chat.completions.with_raw_response.create(model=BASE, messages=long, max_tokens=8)  # type: ignore[arg-type]
    assert resp.http_response.status_code == 200
    row = rig.rows().row(0, named=True)
    assert row["served_model"] == BACKUP and row["fallback_used"] is True
    assert "context" in (row["fallback_reason"] or "")


def test_concurrent_requests_queue_in_the_engine_and_are_all_accounted(rig: Rig) -> None:
    async def go() -> list[openai.types.chat.ChatCompletion]:
        c = openai.AsyncOpenAI(base_url=rig.srv.base_url + "/v1", api_key=TOKEN, max_retries=0, timeout=120)
        try:
            return list(await asyncio.gather(*(
                c.chat.completions.create(model=BASE, max_tokens=8, temperature=0.0,
                                          messages=[{"role": "user", "content": f"flaky test {i}"}])
                for i in range(16))))
        finally:
            await c.close()

    t0 = time.monotonic()
    res = asyncio.run(go())
    wall = time.monotonic() - t0
    assert all(r.model == BASE and r.usage is not None and r.usage.completion_tokens > 0 for r in res)
    rows = rig.rows()
    assert rows.height == 16 and set(rows["served_model"]) == {BASE} and not rows["fallback_used"].any()
    # the engine runs one generation at a time: each request's recorded latency includes its wait in
    # the engine's queue, so together they add up to much more than the wall time of the burst
    assert sum(rows["latency_s"].to_list()) > 2.0 * wall
    assert max(rows["latency_s"].to_list()) <= wall
    price = GPU_USD_PER_HOUR / 3600
    assert all(0 < c <= x * price for c, x in zip(rows["cost_usd"].to_list(), rows["latency_s"].to_list(), strict=True))


def test_engine_killed_before_the_request_fails_over(tiny_model: TinyEngineModel, backup: ReplayBackendServer,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LlamaCppServer(engine_models(tiny_model)) as eng:
        for rig in _rig(eng.base_url, backup, tmp_path, monkeypatch):
            eng.kill()
            r = rig.client.chat.completions.create(model=BASE, messages=MSG, max_tokens=8)  # type: ignore[arg-type]
            assert r.model == BACKUP
            row = rig.rows().row(0, named=True)
            assert row["served_model"] == BACKUP and row["fallback_used"] is True and row["fallback_reason"]


def test_engine_killed_mid_stream_ends_the_stream_with_an_error_event(
    tiny_model: TinyEngineModel, backup: ReplayBackendServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LlamaCppServer(engine_models(tiny_model)) as eng:
        assert eng.pid is not None
        for rig in _rig(eng.base_url, backup, tmp_path, monkeypatch):
            # greedy decoding is deterministic: this request generates all 200 tokens (no early end)
            full = _direct(eng, messages=MSG, max_tokens=200, temperature=0.0)
            assert full["choices"][0]["finish_reason"] == "length"
            got: list[str] = []
            with httpx.stream("POST", rig.srv.base_url + "/v1/chat/completions", timeout=60,
                              headers={"authorization": f"Bearer {TOKEN}"},
                              json={"model": BASE, "messages": MSG, "max_tokens": 200, "stream": True,
                                    "temperature": 0.0}) as resp:
                assert resp.status_code == 200
                for line in resp.iter_lines():
                    if line.startswith("data: ") and not got:
                        os.killpg(eng.pid, signal.SIGSTOP)  # freeze it mid-generation, then kill it
                        os.killpg(eng.pid, signal.SIGKILL)
                    if line.startswith("data: "):
                        got.append(line[6:])
            assert got and got[-1] != "[DONE]"
            last = __import__("json").loads(got[-1])
            assert "error" in last and "stream" in str(last["error"]).lower()
            row = rig.rows().row(0, named=True)
            assert row["error"] is not None


def test_a_frozen_engine_times_out_and_fails_over(tiny_model: TinyEngineModel, backup: ReplayBackendServer,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LlamaCppServer(engine_models(tiny_model)) as eng:
        assert eng.pid is not None
        for rig in _rig(eng.base_url, backup, tmp_path, monkeypatch, timeout_s=1.0):
            os.killpg(eng.pid, signal.SIGSTOP)  # a stalled engine: accepts connections, answers nothing
            try:
                r = rig.client.chat.completions.create(model=BASE, messages=MSG, max_tokens=8)  # type: ignore[arg-type]
            finally:
                os.killpg(eng.pid, signal.SIGCONT)
            assert r.model == BACKUP
            row = rig.rows().row(0, named=True)
            assert row["served_model"] == BACKUP and "timeout" in (row["fallback_reason"] or "")


def test_base_plus_adapter_is_a_routable_model_whose_output_differs(
    tiny_model: TinyEngineModel, tiny_lora: Path, backup: ReplayBackendServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    with LlamaCppServer(engine_models(tiny_model, tiny_lora)) as eng:
        for rig in _rig(eng.base_url, backup, tmp_path, monkeypatch, models=(BASE, ADAPTED)):
            prompt = [{"role": "user", "content": "Generate unit tests for the cart module"}]
            outs = {m: rig.client.chat.completions.create(model=m, messages=prompt, max_tokens=6,  # type: ignore[arg-type]
                                                          temperature=0.0).choices[0].message.content
                    for m in (BASE, ADAPTED)}
            assert outs[BASE] != outs[ADAPTED]
            assert set(rig.rows()["served_model"]) == {BASE, ADAPTED}
