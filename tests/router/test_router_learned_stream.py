"""LEARNED strategy (in-process artifact and remote endpoint), streaming failover, OpenTelemetry spans."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _router_helpers import SENSITIVE_PROMPT, SIMPLE_PROMPT, by_model, router_config
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from router_rl.features import FeatureEncoder
from router_rl.policies.baselines import RandomPolicy
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_client import HTTPPolicyClient, InProcessPolicyClient
from router_rl.router.request import RouteInput
from router_rl.router.server import RouterServer
from router_rl.router.stream import StreamEvent
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
MODELS = ("small-local", "big-local", "cloud-large")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    tasks = pl.DataFrame(
        {"task_id": ["a", "b"], "prompt": ["x", "y"], "agent_type": ["gen", "rev"], "category": ["unit", "review"]}
    )
    enc = FeatureEncoder().fit(tasks)
    d = tmp_path / "policy"
    RandomPolicy(MODELS, weights=[0.5, 0.3, 0.2]).attach_encoder(enc).save(d)
    return d


def _inp(prompt: str, **kw: Any) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": prompt}], **kw)


def test_learned_in_process_samples_with_valid_propensities(
    backends: Backends, tmp_path: Path, policy_dir: Path
) -> None:
    local, cloud = backends

    def run(log_dir: Path) -> pl.DataFrame:
        async def go() -> None:
            cfg = parse_config(router_config(
                local.base_url, cloud.base_url, strategy="learned", learned={"policy_dir": str(policy_dir)},
                logging={"decision_log_dir": str(log_dir), "flush_interval_s": 60}, seed=3,
            ))
            r = HybridRouter(cfg)
            try:
                for i in range(150):
                    await r.route(_inp(SIMPLE_PROMPT, request_id=f"r{i}", agent_type="gen", category="unit"))
                await r.route(_inp(SENSITIVE_PROMPT, request_id="sens"))
            finally:
                await r.aclose()

        asyncio.run(go())
        return read_decision_log(log_dir)

    df = run(tmp_path / "l1")
    assert df.height == 151
    main = df.filter(pl.col("request_id") != "sens")
    assert main["action_probs"].to_list()[0] == pytest.approx([0.5, 0.3, 0.2])
    assert main["policy_version"][0].startswith("random@")
    counts = main["chosen_model"].value_counts().sort("chosen_model")
    share = dict(zip(counts["chosen_model"].to_list(), (counts["count"] / 150).to_list(), strict=True))
    assert share["small-local"] == pytest.approx(0.5, abs=0.13)
    assert share["cloud-large"] == pytest.approx(0.2, abs=0.1)
    props = {"small-local": 0.5, "big-local": 0.3, "cloud-large": 0.2}
    assert all(p == pytest.approx(props[m]) for m, p in zip(main["chosen_model"], main["propensity"], strict=True))
    assert main["features"][0] is not None and len(main["features"][0]) > 0
    # sensitive: cloud masked out, renormalised over the local models
    sens = df.filter(pl.col("request_id") == "sens").row(0, named=True)
    assert sens["action_probs"] == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0])
    assert sens["served_model"] != "cloud-large"
    # reproducible: same seed + request ids -> same choices
    df2 = run(tmp_path / "l2")
    assert df2["chosen_model"].to_list() == df["chosen_model"].to_list()


def _slow_policy_app(release: threading.Event | None, models: tuple[str, ...], answered: list[float]) -> FastAPI:
    """A policy endpoint that answers at once, or (``release`` given) only once the test releases it."""
    app = FastAPI()

    @app.post("/route")
    async def route(request: Request) -> JSONResponse:
        body = await request.json()
        if release is not None:
            await asyncio.to_thread(release.wait, 30.0)
        answered.append(time.monotonic())
        n = len(body["records"])
        p = [1.0 / len(models)] * len(models)
        return JSONResponse({"policy_version": "remote@1", "models": list(models), "probs": [p] * n,
                             "chosen": [models[0]] * n, "propensity": [p[0]] * n})

    return app


@pytest.mark.parametrize("expect_remote", [True, False])
def test_remote_policy_endpoint_and_timeout_fallback(backends: Backends, tmp_path: Path, expect_remote: bool) -> None:
    local, cloud = backends
    release = None if expect_remote else threading.Event()
    answered: list[float] = []
    with RouterServer(_slow_policy_app(release, MODELS, answered)) as pol:
        async def go() -> HybridRouter:
            cfg = parse_config(router_config(
                local.base_url, cloud.base_url, strategy="learned",
                learned={"endpoint": pol.base_url, "timeout_s": 0.1},
                logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60},
            ))
            r = HybridRouter(cfg)
            assert isinstance(r.policy_client, HTTPPolicyClient)
            try:
                res = await r.route(_inp(SIMPLE_PROMPT))
                assert res.served_model is not None
                # a slow policy is never waited for: it is still blocked when the request is served
                assert len(answered) == (1 if expect_remote else 0)
            finally:
                if release is not None:
                    release.set()
                await r.aclose()
            return r

        r = asyncio.run(go())
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    if expect_remote:
        assert row["policy_version"] == "remote@1"
        assert row["action_probs"] == pytest.approx([1 / 3] * 3)
        assert row["fallback_reason"] is None
    else:
        assert row["policy_version"].endswith("balanced(fallback)")
        assert row["fallback_reason"] == "policy_timeout" and row["chosen_model"] == "small-local"
        assert 'router_rl_policy_errors_total{reason="timeout"} 1.0' in r.metrics.render().decode()


def test_broken_in_process_policy_never_fails_a_request(backends: Backends, policy_dir: Path) -> None:
    class Broken:
        def transform_records(self, records: list[dict[str, Any]]) -> np.ndarray:
            raise RuntimeError("encoder exploded")

    client = InProcessPolicyClient.from_policy(RandomPolicy(MODELS).attach_encoder(Broken()))
    local, cloud = backends

    async def go() -> str:
        cfg = parse_config(router_config(local.base_url, cloud.base_url, strategy="learned",
                                         learned={"policy_dir": str(policy_dir)}))
        r = HybridRouter(cfg, policy_client=client)
        try:
            res = await r.route(_inp(SIMPLE_PROMPT))
            assert res.decision.note == "policy_error"
            return res.served_model
        finally:
            await r.aclose()

    assert asyncio.run(go()) == "small-local"


async def _collect(r: HybridRouter, prompt: str, **kw: Any) -> tuple[str, list[StreamEvent]]:
    s = await r.route_stream(_inp(prompt, **kw))
    return s.served_model, [ev async for ev in s.events()]


@pytest.mark.parametrize("kind", ["reset", "http_5xx", "malformed", "stall_before_first_token"])
def test_stream_fails_over_before_first_token(backends: Backends, tmp_path: Path, kind: str) -> None:
    local, cloud = backends
    local.backend.faults.replace([{"kind": kind, "model": "small-local", "stream": True, "delay_s": 3.0}])

    async def go() -> tuple[str, list[StreamEvent]]:
        r = HybridRouter(parse_config(router_config(
            local.base_url, cloud.base_url, logging={"decision_log_dir": str(tmp_path / "log")},
            fallback={"latency_threshold_s": 0.5})))
        try:
            return await _collect(r, SIMPLE_PROMPT)
        finally:
            await r.aclose()

    served, events = asyncio.run(go())
    assert served == "big-local"
    text = "".join(e.delta for e in events)
    assert text.startswith("ok quality=") and all(e.error is None for e in events)
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["served_model"] == "big-local" and row["fallback_used"] and row["error"] is None


def test_stream_broken_after_first_token_is_reported_not_truncated(backends: Backends, tmp_path: Path) -> None:
    local, cloud = backends
    local.backend.faults.replace([{"kind": "reset_after_first_token", "model": "small-local", "stream": True}])

    async def go() -> tuple[str, list[StreamEvent], str]:
        r = HybridRouter(parse_config(router_config(
            local.base_url, cloud.base_url, logging={"decision_log_dir": str(tmp_path / "log")})))
        try:
            served, events = await _collect(r, SIMPLE_PROMPT)
            return served, events, r.metrics.render().decode()
        finally:
            await r.aclose()

    served, events, metrics = asyncio.run(go())
    assert served == "small-local"
    assert events[0].delta and events[0].error is None
    assert events[-1].error is not None and events[-1].error.startswith("stream_broken_after_first_token")
    assert by_model(local) == {"small-local": 1}  # no silent retry duplicating output
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["error"].startswith("stream_broken_after_first_token")
    assert 'router_rl_stream_errors_total{phase="after_first_token"} 1.0' in metrics


def test_spans_carry_genai_attributes(backends: Backends) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    local, cloud = backends
    local.backend.faults.replace([{"kind": "http_5xx", "model": "small-local", "count": 1}])

    async def go() -> None:
        r = HybridRouter(parse_config(router_config(local.base_url, cloud.base_url)), tracer_provider=tp)
        try:
            await r.route(_inp(SIMPLE_PROMPT))
        finally:
            await r.aclose()

    asyncio.run(go())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"chat router-rl/auto", "chat small-local", "chat big-local"}
    root = spans["chat router-rl/auto"]
    ok = spans["chat big-local"]
    failed = spans["chat small-local"]
    assert ok.parent is not None and ok.parent.span_id == root.context.span_id
    assert ok.attributes is not None and failed.attributes is not None and root.attributes is not None
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.system"] == "openai"
    assert ok.attributes["gen_ai.request.model"] == "big-local"
    assert ok.attributes["gen_ai.response.model"] == "big-local"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 40
    assert ok.attributes["gen_ai.usage.output_tokens"] == 12
    assert failed.attributes["error.type"] == "http_5xx"
    assert root.attributes["gen_ai.request.model"] == "small-local"
    assert root.attributes["gen_ai.response.model"] == "big-local"
    assert root.attributes["router_rl.fallback_used"] is True
    assert all(SIMPLE_PROMPT not in str(v) for s in spans.values() for v in (s.attributes or {}).values())


def test_shadow_candidate_policy_is_logged_never_executed(backends: Backends, tmp_path: Path) -> None:
    tasks = pl.DataFrame({"task_id": ["a"], "prompt": ["x"], "agent_type": ["gen"], "category": ["unit"]})
    cand = tmp_path / "candidate"
    # the candidate always wants the cloud
    RandomPolicy(MODELS, weights=[0.0, 0.0, 1.0]).attach_encoder(FeatureEncoder().fit(tasks)).save(cand)
    local, cloud = backends

    async def go() -> None:
        cfg = parse_config(router_config(
            local.base_url, cloud.base_url, rollout={"shadow": {"policy_dir": str(cand)}},
            logging={"decision_log_dir": str(tmp_path / "log")},
        ))
        r = HybridRouter(cfg)
        try:
            for i in range(5):
                await r.route(_inp(SIMPLE_PROMPT, request_id=f"s{i}"))
        finally:
            await r.aclose()

    asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    assert df["shadow_model"].to_list() == ["cloud-large"] * 5
    assert df["served_model"].to_list() == ["small-local"] * 5 and df["strategy"].to_list() == ["balanced"] * 5
    assert by_model(cloud) == {}
