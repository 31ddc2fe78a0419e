"""Every example engine config in examples/engines/ loads and serves a request.

llama.cpp: the real engine serving the tiny model under the example's aliases. vLLM and Ollama (not
installable here): a replay backend speaking their OpenAI-compatible API (and Ollama's ``/api/tags``)
under the example's model names; ``base_url`` is pointed at it, nothing else is changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from router_rl.engines.llamacpp import EngineModel, LlamaCppServer
from router_rl.engines.tiny import TinyEngineModel
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.request import RouteInput
from router_rl.traces.catalog import ModelCatalog, ModelSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "engines"


def _load(name: str, base_url: str, tmp_path: Path) -> dict[str, Any]:
    cfg = yaml.safe_load((EXAMPLES / name).read_text())
    assert len(cfg["providers"]) == 1
    cfg["providers"][0]["base_url"] = base_url
    cfg["logging"] = {"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 0.05}
    return cfg


def _route_each(cfg: dict[str, Any]) -> dict[str, str | None]:
    async def go() -> dict[str, str | None]:
        r = HybridRouter.from_config(parse_config(cfg))
        try:
            out = {}
            for m in r.config.model_ids():
                res = await r.route(RouteInput(messages=[{"role": "user", "content": "Write a unit test."}],
                                               model=m, max_tokens=4))
                out[m] = res.served_model
            return out
        finally:
            await r.aclose()

    return asyncio.run(go())


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", "tok-example")
    monkeypatch.setenv("ROUTER_RL_ADMIN_TOKENS", "tok-example-admin")


def test_llamacpp_example_against_the_real_engine(tiny_model: TinyEngineModel, tiny_lora: Path, tmp_path: Path,
                                                  tokens: None) -> None:
    cfg = yaml.safe_load((EXAMPLES / "router-llamacpp.yaml").read_text())
    aliases = [m["model"] for m in cfg["providers"][0]["models"]]
    models = [EngineModel(a, tiny_model.gguf, lora=tiny_lora if "+" in a else None, n_ctx=tiny_model.context_length)
              for a in aliases]
    with LlamaCppServer(models) as eng:
        served = _route_each(_load("router-llamacpp.yaml", eng.base_url, tmp_path))
    assert served == {a: a for a in aliases}


@pytest.fixture
def replay_for() -> Iterator[Any]:
    servers: list[ReplayBackendServer] = []

    def make(models: list[str]) -> ReplayBackendServer:
        frame = pl.DataFrame([{"task_id": "t0", "model": m, "quality": 1.0, "cost_usd": 0.0, "latency_s": 0.01,
                               "input_tokens": 10, "output_tokens": 4, "prompt": "x"} for m in models])
        b = ReplayBackend.from_frame(frame, catalog=ModelCatalog([ModelSpec(m, "p", "local") for m in models]),
                                     time_scale=0.0)
        srv = ReplayBackendServer(b).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


@pytest.mark.parametrize("name", ["router-vllm.yaml", "router-ollama.yaml"])
def test_openai_compatible_examples_serve_every_model(name: str, replay_for: Any, tmp_path: Path,
                                                      tokens: None) -> None:
    cfg = yaml.safe_load((EXAMPLES / name).read_text())
    models = [m["model"] for m in cfg["providers"][0]["models"]]
    srv = replay_for(models)
    served = _route_each(_load(name, srv.base_url, tmp_path))
    assert served == {m: m for m in models}
    assert sorted(srv.backend.stats()["by_model"]) == sorted(models)
