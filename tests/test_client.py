"""``router_rl.client`` with the real OpenAI SDK against a real router and replay backend on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import polars as pl
import pytest

from router_rl.client import AsyncFeedbackClient, FeedbackClient, FeedbackError, feedback_event, request_id_of
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.parts import read_parts
from router_rl.traces.schema import FEEDBACK_SCHEMA

TOKEN = "tok-client-test-9d8c7b6a"
MSG = [{"role": "user", "content": "Write a unit test for the getter."}]


@pytest.fixture
def router_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    frame = pl.DataFrame([{"task_id": f"t{i}", "model": "m-local", "quality": 0.7, "cost_usd": 0.0,
                           "latency_s": 0.1, "input_tokens": 20, "output_tokens": 5, "prompt": f"p{i}"}
                          for i in range(5)])
    backend = ReplayBackend.from_frame(frame, catalog=ModelCatalog([ModelSpec("m-local", "local", "local")]),
                                       time_scale=0.0)
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", TOKEN)
    with ReplayBackendServer(backend) as be:
        cfg = parse_config({
            "providers": [{"name": "local", "kind": "openai_compatible", "base_url": be.base_url,
                           "location": "local", "max_retries": 0, "models": [{"model": "m-local"}]}],
            "tiers": dict.fromkeys(("simple", "moderate", "complex", "very_complex"), "m-local"),
            "logging": {"decision_log_dir": str(tmp_path / "decisions")},
        })
        with RouterServer(build_server_app(HybridRouter.from_config(cfg))) as srv:
            yield srv.base_url + "/v1"


def _rows(tmp_path: Path) -> pl.DataFrame:
    return read_parts(tmp_path / "feedback", schema=FEEDBACK_SCHEMA, what="feedback")


def test_request_id_of_every_sdk_shape_and_feedback_round_trip(router_url: str, tmp_path: Path) -> None:
    llm = openai.OpenAI(base_url=router_url, api_key=TOKEN, max_retries=0)
    answer = llm.chat.completions.create(model="router-rl/auto", messages=MSG)  # type: ignore[arg-type]
    rid = request_id_of(answer)
    assert answer.id == f"chatcmpl-{rid}" and len(rid) == 32
    raw = llm.chat.completions.with_raw_response.create(model="router-rl/auto", messages=MSG)  # type: ignore[arg-type]
    assert request_id_of(raw) == raw.headers["x-request-id"] == request_id_of(raw.parse())
    stream = llm.chat.completions.create(model="router-rl/auto", messages=MSG, stream=True)  # type: ignore[arg-type]
    sid = request_id_of(stream)  # from the stream's response header, before reading it
    assert {request_id_of(ch) for ch in stream} == {sid}
    own = llm.chat.completions.create(model="router-rl/auto", messages=MSG,  # type: ignore[arg-type]
                                      extra_headers={"x-request-id": "agent-1-step-4"})
    assert request_id_of(own) == "agent-1-step-4"
    h = httpx.post(router_url + "/chat/completions", json={"model": "router-rl/auto", "messages": MSG},
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert request_id_of(h) == h.headers["x-request-id"] == request_id_of(h.json())
    assert request_id_of(f"chatcmpl-{rid}") == rid

    with FeedbackClient(router_url, api_key=TOKEN) as fb:
        r = fb.send(rid, 0.9, "judge:pytest", details={"passed": 9, "failed": 1},
                    ts=datetime.now(UTC) - timedelta(hours=2))
        assert (r.status, r.request_id, r.source, r.redacted) == ("stored", rid, "judge:pytest", ())
        assert fb.send(rid, 0.9, "judge:pytest", details={"passed": 9, "failed": 1},
                       ts=datetime.now(UTC) - timedelta(hours=3)).status == "stored"  # another observation
        assert fb.send(sid, 0.5, "agent", idempotency_key="k1").status == "stored"
        assert fb.send(sid, 0.5, "agent", idempotency_key="k1").status == "duplicate"
        batch = fb.send_batch([feedback_event(rid, 1.0, "human"), feedback_event("agent-1-step-4", 0.0, "human")])
        assert [b.status for b in batch] == ["stored", "stored"]
    rows = _rows(tmp_path)
    assert rows.height == 5 and set(rows["request_id"]) == {rid, sid, "agent-1-step-4"}


def test_errors_carry_the_routers_message_code_and_field(router_url: str) -> None:
    base = router_url.removesuffix("/v1")  # /v1 is appended when missing
    with FeedbackClient(base, api_key=TOKEN) as fb:
        with pytest.raises(FeedbackError) as e:
            fb.send("never-logged", 0.5, "agent")
        assert (e.value.status, e.value.code, e.value.param) == (404, "unknown_request_id", "request_id")
        assert "never logged" in e.value.message and "HTTP 404" in str(e.value)
        with pytest.raises(FeedbackError) as e:
            fb.send("x", 1.5, "agent")
        assert (e.value.status, e.value.param) == (422, "quality")
        with pytest.raises(FeedbackError) as e:
            fb.send_batch([feedback_event("x", 0.5, "agent"), feedback_event("x", 0.5, "bad source")])
        assert e.value.param == "items[1].source"
    with FeedbackClient(router_url, api_key="wrong") as fb, pytest.raises(FeedbackError) as e:
        fb.send("x", 0.5, "agent")
    assert e.value.status == 401
    with pytest.raises(ValueError, match="naive datetime"):
        feedback_event("x", 0.5, "agent", ts=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="cannot find a request id"):
        request_id_of(object())


def test_503_and_transport_errors_are_retried_then_raised() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[bytes] = []

    class Flaky(BaseHTTPRequestHandler):  # a real loopback server: 503 once, then the answer
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            out: dict[str, Any]
            if len(bodies) == 1:
                status, out = 503, {"error": {"message": "store busy", "code": "feedback_store_error"}}
            else:
                status, out = 200, {"object": "feedback", "id": "k", "request_id": "r", "source": "agent",
                                    "status": "stored", "redacted": []}
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with FeedbackClient(f"http://127.0.0.1:{srv.server_port}/v1", backoff_s=0) as fb:
            assert fb.send("r", 0.5, "agent").status == "stored"
        with FeedbackClient(f"http://127.0.0.1:{srv.server_port}/v1", max_retries=0, backoff_s=0) as fb:
            bodies.clear()
            with pytest.raises(FeedbackError) as e:
                fb.send("r", 0.5, "agent")
            assert (e.value.status, e.value.code, e.value.message) == (503, "feedback_store_error", "store busy")
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(set(bodies)) == 1  # a retry sends the same body (deduplicated by the router)
    port = srv.server_port  # closed now: connection refused
    with FeedbackClient(f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0) as fb, \
            pytest.raises(FeedbackError, match="cannot reach") as e:
        fb.send("r", 0.5, "agent")
    assert e.value.status is None


def test_async_client_with_the_async_sdk(router_url: str, tmp_path: Path) -> None:
    import asyncio

    async def run() -> list[str]:
        llm = openai.AsyncOpenAI(base_url=router_url, api_key=TOKEN, max_retries=0)
        answers = await asyncio.gather(*(llm.chat.completions.create(model="router-rl/auto", messages=MSG)  # type: ignore[arg-type]
                                         for _ in range(3)))
        rids = [request_id_of(a) for a in answers]
        async with AsyncFeedbackClient(router_url, api_key=TOKEN) as fb:
            res = await asyncio.gather(*(fb.send(r, 0.6, "agent") for r in rids), fb.send(rids[0], 0.6, "agent"))
            with pytest.raises(FeedbackError) as e:
                await fb.send_batch([feedback_event(rids[0], 0.6, "agent"), feedback_event("zz", 0.6, "agent")])
            assert (e.value.status, e.value.param) == (404, "items[1].request_id")
        await llm.close()
        return sorted(r.status for r in res)

    assert asyncio.run(run()) == ["duplicate", "stored", "stored", "stored"]
    assert _rows(tmp_path).height == 3
