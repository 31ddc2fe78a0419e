"""The replay backend's ASGI app: OpenAI, Anthropic, Ollama and admin routes over a ReplayBackend.

:class:`ReplayHandlers` holds the request logic (parse, task lookup, faults, recorded errors,
replies); :func:`build_app` only declares the routes. Bodies and streams are spelled by
:mod:`router_rl.replay.wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from router_rl.core.errors import ConfigError
from router_rl.replay.backend import ITERATION_HEADER, QUALITY_HEADER, TASK_HEADER, ReplayBackend, error_status, sha
from router_rl.replay.faults import FaultKind, FaultRule
from router_rl.replay.wire import (
    chat_ollama,
    chat_ollama_lines,
    completion_openai,
    dialect_for,
    error_response,
    message_anthropic,
    paced_stream,
)

_TRANSPORT_KEY = "router_rl.transport"


class ReplayHandlers:
    """Request handling of a replay server (one instance per app).

    Args:
        backend: The served backend.
    """

    def __init__(self, backend: ReplayBackend) -> None:
        self.backend = backend

    @staticmethod
    async def wait(request: Request, seconds: float) -> None:
        """Sleep ``seconds`` but return early once the client has gone away."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.05, left))
            if await request.is_disconnected():
                return

    @staticmethod
    async def reset(request: Request) -> Response:
        """Abort the connection with an RST (no response reaches the client)."""
        transport = request.scope.get(_TRANSPORT_KEY)
        if transport is None:  # not under uvicorn: the closest we can do
            raise ConnectionAbortedError("replay fault: reset")
        _abort(transport)
        await asyncio.sleep(0.01)
        return Response(status_code=500)

    async def parse(self, request: Request, api: str) -> dict[str, Any] | Response:
        """The JSON body of a completion request, or the error response explaining why not."""
        err = error_response
        if not self.backend.check_key(request.headers):
            return err(api, 401, "invalid api key", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return err(api, 400, "request body is not valid JSON", "invalid_json")
        if not isinstance(body, dict):
            return err(api, 400, "request body must be a JSON object", "invalid_request")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return err(api, 400, "field 'model' is required", "invalid_request")
        if model not in self.backend.models:
            return err(api, 404, f"model {model!r} not found (served: {list(self.backend.models)})", "model_not_found")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return err(api, 400, "field 'messages' must be a non-empty list", "invalid_request")
        return body

    @staticmethod
    def prompts_of(body: dict[str, Any]) -> tuple[list[str], int]:
        """Prompt texts to match a task by and the prompt size.

        The user messages from the last one back (a follow-up turn continues the task of an
        earlier message), then the whole conversation.
        """
        msgs = [m for m in body["messages"] if isinstance(m, dict)]
        texts = [_text(m.get("content")) for m in msgs]
        users = [_text(m.get("content")) for m in msgs if m.get("role") == "user"]
        system = _text(body.get("system")) if body.get("system") else None
        cands = users[::-1]
        cands.append("\n".join(texts))
        chars = sum(len(t) for t in texts) + (len(system) if system else 0)
        return cands, chars

    def task_outcome(self, request: Request, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The recorded outcome of the request's task for its model, and how the task was matched.

        Raises:
            KeyError: the task header names an unknown task id.
        """
        cands, chars = self.prompts_of(body)
        row, how = self.backend.resolve_task(request.headers.get(TASK_HEADER), cands)
        row = self.backend.iteration_row(row, request.headers.get(ITERATION_HEADER))
        return self.backend.outcome(row, body["model"], chars), how

    async def completion(self, request: Request, api: str) -> Response:
        """``POST /v1/chat/completions`` (``api="openai"``) and ``/v1/messages`` (``"anthropic"``)."""
        backend = self.backend
        parsed = await self.parse(request, api)
        if isinstance(parsed, Response):
            return parsed
        body = parsed
        model: str = body["model"]
        stream = bool(body.get("stream", False))
        try:
            out, how = self.task_outcome(request, body)
        except KeyError as e:
            return error_response(api, 400, f"unknown task id {e.args[0]!r} in header {TASK_HEADER}", "unknown_task")
        rule = backend.faults.pick(model=model, provider=backend.provider_of(model), api=api, stream=stream)
        backend.record(
            {
                "api": api,
                "model": model,
                "task_id": out["task_id"],
                "match": how,
                "stream": stream,
                "fault": rule.kind.value if rule else None,
                "keep_alive": body.get("keep_alive"),
                "include_usage": bool((body.get("stream_options") or {}).get("include_usage")),
            }
        )
        headers = {
            TASK_HEADER: str(out["task_id"]),
            QUALITY_HEADER: f"{out['quality']:.6f}",
            "x-router-rl-task-match": how,
        }
        if rule is not None:
            early = await self.fault_before_reply(request, api, rule, stream)
            if early is not None:
                return early
        if out["error"] is not None:
            await self.wait(request, out["recorded_latency_s"] * backend.time_scale)
            status, code = error_status(str(out["error"]))
            return error_response(api, status, f"replayed recorded error {out['error']!r}", code, headers)
        if stream:
            gen = paced_stream(
                dialect_for(api, body, out), out, rule,
                total_s=out["recorded_latency_s"] * backend.time_scale,
                wait=lambda s: self.wait(request, s),
                reset=lambda: _abort(request.scope.get(_TRANSPORT_KEY)),
            )
            return StreamingResponse(gen, media_type="text/event-stream", headers=headers)
        await self.wait(request, out["recorded_latency_s"] * backend.time_scale)
        if rule is not None and rule.kind == FaultKind.MALFORMED:
            return Response('{"id": "replay", "choices": [{"message": {"content": "ok', media_type="application/json")
        payload = completion_openai(model, out) if api == "openai" else message_anthropic(model, out)
        return JSONResponse(payload, headers=headers)

    async def ollama_chat(self, request: Request) -> Response:
        """Ollama's native ``POST /api/chat`` (JSON, or NDJSON when ``stream`` is true, Ollama's default).

        The same task matching and recorded outcomes as the OpenAI route; ``keep_alive`` is recorded.
        Faults apply to the OpenAI / Anthropic routes only.
        """
        backend = self.backend
        parsed = await self.parse(request, "openai")
        if isinstance(parsed, Response):
            return JSONResponse({"error": json.loads(bytes(parsed.body))["error"]["message"]},
                                status_code=parsed.status_code)
        body = parsed
        model: str = body["model"]
        stream = bool(body.get("stream", True))
        try:
            out, how = self.task_outcome(request, body)
        except KeyError as e:
            return JSONResponse({"error": f"unknown task id {e.args[0]!r} in header {TASK_HEADER}"}, status_code=400)
        backend.record({"api": "ollama", "model": model, "task_id": out["task_id"], "match": how, "stream": stream,
                        "fault": None, "keep_alive": body.get("keep_alive"), "include_usage": False})
        await self.wait(request, out["recorded_latency_s"] * backend.time_scale)
        if out["error"] is not None:
            return JSONResponse({"error": f"replayed recorded error {out['error']!r}"},
                                status_code=error_status(str(out["error"]))[0])
        if stream:
            return Response(b"".join(chat_ollama_lines(model, out)), media_type="application/x-ndjson")
        return JSONResponse(chat_ollama(model, out))

    async def fault_before_reply(self, request: Request, api: str, rule: FaultRule, stream: bool) -> Response | None:
        """The response of a fault that acts before any content (None: the fault acts later, in the stream)."""
        k = rule.kind
        if k == FaultKind.TIMEOUT or (not stream and k in (FaultKind.STALL_BEFORE_FIRST_TOKEN,
                                                            FaultKind.STALL_AFTER_FIRST_TOKEN)):
            await self.wait(request, rule.delay_s)
            return error_response(api, 504, "replay fault: timeout", "timeout")
        if k == FaultKind.RESET or (not stream and k == FaultKind.RESET_AFTER_FIRST_TOKEN):
            return await self.reset(request)
        if k in (FaultKind.HTTP_5XX, FaultKind.HTTP_429, FaultKind.HTTP_4XX):
            h = {}
            if rule.retry_after_s is not None:
                h["retry-after"] = f"{rule.retry_after_s:g}"
            code = rule.code or {FaultKind.HTTP_429: "rate_limit_exceeded", FaultKind.HTTP_5XX: "server_error"}.get(
                k, "invalid_request"
            )
            msg = f"replay fault: {k.value}" + (" (maximum context length exceeded)" if "context" in code else "")
            return error_response(api, rule.http_status, msg, code, h)
        return None

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``: deterministic pseudo-embeddings."""
        backend = self.backend
        if not backend.check_key(request.headers):
            return error_response("openai", 401, "invalid api key", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return error_response("openai", 400, "request body is not valid JSON", "invalid_json")
        inputs = body.get("input") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            return error_response("openai", 400, "field 'input' must be a string or a list of strings",
                                  "invalid_request")
        backend.record({"api": "embeddings", "model": body.get("model"), "task_id": None, "match": None,
                        "stream": False, "fault": None})
        data = [{"object": "embedding", "index": i, "embedding": _embed(x)} for i, x in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": sum(max(1, len(x) // 4) for x in inputs), "total_tokens": 0}})

    async def set_faults(self, request: Request, append: bool) -> Response:
        """``PUT`` (replace) / ``POST`` (append) ``/admin/faults``."""
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
        faults = self.backend.faults
        try:
            (faults.add if append else faults.replace)(data.get("faults", []) if isinstance(data, dict) else data)
        except ConfigError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        return JSONResponse({"faults": faults.to_list()})


    async def set_quality(self, request: Request) -> Response:
        """``PUT /admin/quality {"model": M, "factor": F}``: serve M's quality x F from now on (1 restores)."""
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
        if not isinstance(data, dict) or set(data) != {"model", "factor"}:
            return JSONResponse({"error": 'expected {"model": <id>, "factor": <number in [0, 1]>}'}, status_code=422)
        try:
            self.backend.set_quality_factor(data["model"], data["factor"])
        except ConfigError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        return JSONResponse({"factors": self.backend.quality_factors})


def build_app(backend: ReplayBackend) -> ReplayASGIApp:
    """The ASGI app serving ``backend`` (OpenAI, Anthropic, Ollama and admin routes).

    The FastAPI app is ``.app`` of the returned wrapper, which only adds the connection's
    transport to the scope (needed by the ``reset`` faults under uvicorn).
    """
    app = FastAPI(title="router-rl replay backend", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend
    h = ReplayHandlers(backend)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await h.completion(request, "openai")

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await h.completion(request, "anthropic")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await h.embeddings(request)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if not backend.check_key(request.headers):
            return error_response("openai", 401, "invalid api key", "invalid_api_key")
        data = [{"id": m, "object": "model", "created": 0, "owned_by": backend.provider_of(m) or "replay",
                 "type": "model", "display_name": m} for m in backend.models]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/api/tags")
    async def tags() -> Response:
        models = [{"name": m, "model": m, "modified_at": "1970-01-01T00:00:00Z", "size": 0, "digest": sha(m),
                   "details": {"family": "replay"}} for m in backend.models]
        return JSONResponse({"models": models})

    @app.post("/api/chat")
    async def ollama_chat(request: Request) -> Response:
        return await h.ollama_chat(request)

    @app.get("/api/version")
    async def version() -> Response:
        return JSONResponse({"version": "0.0.0-router-rl-replay"})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "n_tasks": backend.matrix.n_tasks, "models": list(backend.models),
                             "time_scale": backend.time_scale})

    @app.get("/admin/faults")
    async def get_faults() -> Response:
        return JSONResponse({"faults": backend.faults.to_list()})

    @app.put("/admin/faults")
    async def put_faults(request: Request) -> Response:
        return await h.set_faults(request, append=False)

    @app.post("/admin/faults")
    async def post_faults(request: Request) -> Response:
        return await h.set_faults(request, append=True)

    @app.delete("/admin/faults")
    async def delete_faults() -> Response:
        backend.faults.clear()
        return JSONResponse({"faults": []})

    @app.get("/admin/quality")
    async def get_quality() -> Response:
        return JSONResponse({"factors": backend.quality_factors})

    @app.put("/admin/quality")
    async def put_quality(request: Request) -> Response:
        return await h.set_quality(request)

    @app.get("/admin/stats")
    async def get_stats() -> Response:
        return JSONResponse(backend.stats())

    @app.delete("/admin/stats")
    async def delete_stats() -> Response:
        backend.log.clear()
        return JSONResponse({"total": 0})

    @app.post("/admin/kill")
    async def kill() -> Response:
        if backend.on_kill is None:
            return JSONResponse({"error": "this server cannot be stopped remotely"}, status_code=409)
        asyncio.get_running_loop().call_later(0.05, backend.on_kill)
        return JSONResponse({"status": "stopping"})

    return ReplayASGIApp(app)


class ReplayASGIApp:
    """ASGI wrapper exposing uvicorn's transport in the scope so faults can reset the connection."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None:
            scope[_TRANSPORT_KEY] = transport
        await self.app(scope, receive, send)


def _abort(transport: Any) -> None:
    """Close the TCP connection with an RST (SO_LINGER 0), without a response."""
    if transport is None:
        raise ConnectionAbortedError("replay fault: reset (no transport)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def _embed(text: str, dim: int = 16) -> list[float]:
    """Deterministic unit-norm pseudo-embedding of ``text`` (hash-seeded)."""
    seed = int(sha(text)[:16], 16)
    v = np.random.default_rng(seed).standard_normal(dim)
    return [float(x) for x in v / np.linalg.norm(v)]
