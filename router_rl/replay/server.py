"""Replay backend: an OpenAI/Anthropic/Ollama-compatible HTTP server answering from an outcome matrix.

Rehearse a routing policy without spending money: every model of the matrix is served; a call
is mapped to a task (header ``x-router-rl-task-id``, else the prompt text matched against the
tasks' ``prompt`` column, else a SHA-256 hash of the prompt modulo the number of tasks), and
the recorded outcome of that (task, model) cell is replayed:

* content ``"ok quality=0.8123 task=<id>"`` (first word ``fail`` when quality < the threshold),
  the quality also in header ``x-router-rl-quality`` and in the JSON field ``router_rl``;
* the recorded latency x ``time_scale`` (streams: 30% before the first token);
* the recorded token usage (estimates where unknown);
* recorded errors as HTTP errors (``http_429`` -> 429, ``timeout`` -> 504, ``context...`` ->
  400, anything else -> 500).

Faults (:mod:`router_rl.replay.faults`) are injected per model / provider / API and can be
changed at runtime: ``GET/PUT/POST/DELETE /admin/faults``. ``GET/DELETE /admin/stats`` shows
every request the server saw (for retry counting), ``POST /admin/kill`` stops the server and
``GET /health`` answers liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from router_rl.core.errors import ConfigError
from router_rl.replay.faults import FaultKind, FaultRule, FaultSet, load_faults
from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.matrix import OutcomeMatrix

if TYPE_CHECKING:
    from router_rl.traces.traceset import TraceSet

TASK_HEADER = "x-router-rl-task-id"
QUALITY_HEADER = "x-router-rl-quality"
_TRANSPORT_KEY = "router_rl.transport"
_MAX_LOG = 100_000


class ReplayBackend:
    """The state and behaviour of a replay server (independent of how it is hosted).

    Args:
        matrix: Outcomes to replay (its catalog, when present, gives each model's provider).
        error_kinds: Optional ``(n_tasks, n_models)`` array of recorded error strings (None = ok);
            defaults to ``"error"`` where ``matrix.error`` is True.
        time_scale: Multiplier of recorded latencies (0 = answer immediately).
        faults: Initial fault rules.
        seed: Seed of the fault probability draws.
        quality_threshold: Content says ``ok`` when quality >= this, else ``fail``.
        default_latency_s: Latency used where the matrix has none (before scaling).
        api_key: When set, requests must carry it (``Authorization: Bearer`` or ``x-api-key``).
        replay_errors: Answer recorded errors with HTTP errors (else serve the outcome anyway).
    """

    def __init__(
        self,
        matrix: OutcomeMatrix,
        *,
        error_kinds: np.ndarray | None = None,
        time_scale: float = 1.0,
        faults: list[FaultRule | dict[str, Any]] | None = None,
        seed: int = 0,
        quality_threshold: float = 0.5,
        default_latency_s: float = 0.5,
        api_key: str | None = None,
        replay_errors: bool = True,
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale >= 0):
            raise ConfigError("replay.time_scale", f"expected a finite number >= 0, got {time_scale!r}")
        if matrix.n_tasks == 0:
            raise ConfigError("replay.matrix", "the outcome matrix has no task")
        self.matrix = matrix
        if error_kinds is None:
            error_kinds = np.full(matrix.quality.shape, None, dtype=object)
            error_kinds[matrix.error] = "error"
        if error_kinds.shape != matrix.quality.shape:
            raise ConfigError("replay.error_kinds", f"expected shape {matrix.quality.shape}, got {error_kinds.shape}")
        self.error_kinds = error_kinds
        self.time_scale = float(time_scale)
        self.faults = FaultSet(faults, seed=seed)
        self.quality_threshold = quality_threshold
        self.default_latency_s = default_latency_s
        self._api_key = api_key
        self.replay_errors = replay_errors
        self.log: list[dict[str, Any]] = []
        self.on_kill: Callable[[], None] | None = None
        ids = [str(t) for t in matrix.tasks["task_id"].to_list()]
        self._task_index = {t: i for i, t in enumerate(ids)}
        self._task_ids = ids
        self._prompt_index: dict[str, int] = {}
        if "prompt" in matrix.tasks.columns:
            for i, p in enumerate(matrix.tasks["prompt"].to_list()):
                if p:
                    self._prompt_index.setdefault(_sha(str(p)), i)
        self._providers: dict[str, str | None] = {
            m: (matrix.catalog[m].provider if matrix.catalog is not None else None) for m in matrix.models
        }

    def __repr__(self) -> str:
        return (
            f"ReplayBackend(n_tasks={self.matrix.n_tasks}, models={list(self.matrix.models)}, "
            f"time_scale={self.time_scale}, faults={len(self.faults.rules)})"
        )

    # --- construction helpers ------------------------------------------------------------------
    @classmethod
    def from_frame(cls, outcomes: pl.DataFrame, *, catalog: ModelCatalog | None = None, **kw: Any) -> ReplayBackend:
        """Backend over a long outcome table (keeps the recorded error kinds of its ``error`` column)."""
        m = OutcomeMatrix.from_frame(outcomes, catalog=catalog)
        kw.setdefault("error_kinds", _error_kinds(outcomes, m))
        return cls(m, **kw)

    @classmethod
    def from_trace_set(cls, ts: TraceSet, **kw: Any) -> ReplayBackend:
        """Backend over a :class:`~router_rl.traces.TraceSet` (keeps the recorded error kinds)."""
        m = ts.matrix()
        kw.setdefault("error_kinds", _error_kinds(ts.outcomes, m))
        return cls(m, **kw)

    @classmethod
    def from_path(cls, path: str | Path, **kw: Any) -> ReplayBackend:
        """Backend over a trace file readable by :func:`router_rl.traces.load_traces`."""
        from router_rl.traces.load import load_traces

        return cls.from_trace_set(load_traces(path), **kw)

    @classmethod
    def simulated(cls, n_tasks: int = 200, *, seed: int = 0, **kw: Any) -> ReplayBackend:
        """Backend over a simulated fleet (:func:`router_rl.traces.simulate.simulate_fleet`)."""
        from router_rl.traces.simulate import simulate_fleet

        kw.setdefault("seed", seed)
        return cls.from_trace_set(simulate_fleet(n_tasks, seed=seed), **kw)

    # --- lookups ---------------------------------------------------------------------------------
    @property
    def models(self) -> tuple[str, ...]:
        """Served model ids."""
        return self.matrix.models

    def provider_of(self, model: str) -> str | None:
        """Catalog provider of ``model`` (None without a catalog)."""
        return self._providers.get(model)

    def resolve_task(self, task_id: str | None, prompts: list[str]) -> tuple[int, str]:
        """Row of the task a request is about, and how it was found (``header``/``prompt``/``hash``).

        Raises:
            KeyError: when ``task_id`` is given but unknown.
        """
        if task_id:
            if task_id not in self._task_index:
                raise KeyError(task_id)
            return self._task_index[task_id], "header"
        for p in prompts:
            i = self._prompt_index.get(_sha(p))
            if i is not None:
                return i, "prompt"
        h = int(_sha("\n".join(prompts))[:16], 16)
        return h % self.matrix.n_tasks, "hash"

    def check_key(self, headers: Any) -> bool:
        """Whether the request carries the configured API key (always True without one)."""
        if not self._api_key:
            return True
        auth = headers.get("authorization", "")
        return auth == f"Bearer {self._api_key}" or headers.get("x-api-key", "") == self._api_key

    def outcome(self, row: int, model: str, prompt_chars: int) -> dict[str, Any]:
        """The recorded outcome of (task ``row``, ``model``) as a JSON-ready dict."""
        j = self.matrix.model_index(model)
        q = float(self.matrix.quality[row, j])
        lat = float(self.matrix.latency[row, j])
        lat = self.default_latency_s if not math.isfinite(lat) else lat
        it = float(self.matrix.input_tokens[row, j])
        ot = float(self.matrix.output_tokens[row, j])
        verdict = "ok" if q >= self.quality_threshold else "fail"
        content = f"{verdict} quality={q:.4f} task={self._task_ids[row]}"
        return {
            "task_id": self._task_ids[row],
            "task_index": row,
            "quality": q,
            "verdict": verdict,
            "content": content,
            "recorded_latency_s": lat,
            "cost_usd": float(self.matrix.cost[row, j]),
            "input_tokens": int(it) if math.isfinite(it) else max(1, math.ceil(prompt_chars / 4)),
            "output_tokens": int(ot) if math.isfinite(ot) else max(1, math.ceil(len(content) / 4)),
            "error": self.error_kinds[row, j] if self.replay_errors else None,
        }

    def record(self, entry: dict[str, Any]) -> None:
        """Append one request to the server-side log (bounded)."""
        entry["n"] = len(self.log)
        entry["ts"] = time.time()
        if len(self.log) >= _MAX_LOG:
            del self.log[: _MAX_LOG // 10]
        self.log.append(entry)

    def stats(self) -> dict[str, Any]:
        """Request counts by model, API, fault and task, plus the raw log."""
        return {
            "total": len(self.log),
            "by_model": dict(Counter(e["model"] for e in self.log)),
            "by_api": dict(Counter(e["api"] for e in self.log)),
            "by_fault": dict(Counter(e["fault"] or "none" for e in self.log)),
            "by_task": dict(Counter(e["task_id"] for e in self.log if e.get("task_id"))),
            "requests": self.log,
        }


def _error_kinds(outcomes: pl.DataFrame, m: OutcomeMatrix) -> np.ndarray:
    """``(n_tasks, n_models)`` object array of the recorded error strings (None = no error)."""
    kinds = np.full(m.quality.shape, None, dtype=object)
    if "error" in outcomes.columns:
        t_idx = {t: i for i, t in enumerate(m.tasks["task_id"].to_list())}
        m_idx = {x: j for j, x in enumerate(m.models)}
        sub = outcomes.select("task_id", "model", "error").filter(pl.col("error").is_not_null())
        for t, mod, err in sub.iter_rows():
            kinds[t_idx[t], m_idx[mod]] = str(err)
    return kinds


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _error_status(kind: str) -> tuple[int, str]:
    k = kind.lower()
    if "429" in k or "rate" in k:
        return 429, "rate_limit_exceeded"
    if "timeout" in k:
        return 504, "timeout"
    if "context" in k:
        return 400, "context_length_exceeded"
    if "auth" in k:
        return 401, "invalid_api_key"
    return 500, "recorded_error"


# --- the ASGI app ----------------------------------------------------------------------------------
def build_app(backend: ReplayBackend) -> ReplayASGIApp:
    """The ASGI app serving ``backend`` (OpenAI, Anthropic, Ollama and admin routes).

    The FastAPI app is ``.app`` of the returned wrapper, which only adds the connection's
    transport to the scope (needed by the ``reset`` faults under uvicorn).
    """
    app = FastAPI(title="router-rl replay backend", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend

    # ---- helpers --------------------------------------------------------------------------------
    def err(api: str, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
        if api == "anthropic":
            etype = {401: "authentication_error", 429: "rate_limit_error", 404: "not_found_error"}.get(
                status, "api_error" if status >= 500 else "invalid_request_error"
            )
            body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
        else:
            etype = "server_error" if status >= 500 else "invalid_request_error"
            body = {"error": {"message": message, "type": etype, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

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

    async def reset(request: Request) -> Response:
        transport = request.scope.get(_TRANSPORT_KEY)
        if transport is None:  # not under uvicorn: the closest we can do
            raise ConnectionAbortedError("replay fault: reset")
        _abort(transport)
        await asyncio.sleep(0.01)
        return Response(status_code=500)

    async def parse(request: Request, api: str) -> dict[str, Any] | Response:
        if not backend.check_key(request.headers):
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
        if model not in backend.models:
            return err(api, 404, f"model {model!r} not found (served: {list(backend.models)})", "model_not_found")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return err(api, 400, "field 'messages' must be a non-empty list", "invalid_request")
        return body

    def prompts_of(body: dict[str, Any]) -> tuple[list[str], int]:
        msgs = [m for m in body["messages"] if isinstance(m, dict)]
        texts = [_text(m.get("content")) for m in msgs]
        users = [_text(m.get("content")) for m in msgs if m.get("role") == "user"]
        system = _text(body.get("system")) if body.get("system") else None
        cands = [users[-1]] if users else []
        cands.append("\n".join(texts))
        chars = sum(len(t) for t in texts) + (len(system) if system else 0)
        return cands, chars

    async def handle(request: Request, api: str) -> Response:
        parsed = await parse(request, api)
        if isinstance(parsed, Response):
            return parsed
        body = parsed
        model: str = body["model"]
        stream = bool(body.get("stream", False))
        cands, chars = prompts_of(body)
        try:
            row, how = backend.resolve_task(request.headers.get(TASK_HEADER), cands)
        except KeyError as e:
            return err(api, 400, f"unknown task id {e.args[0]!r} in header {TASK_HEADER}", "unknown_task")
        out = backend.outcome(row, model, chars)
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
            early = await apply_fault_early(request, api, rule, stream)
            if early is not None:
                return early
        if out["error"] is not None:
            await wait(request, out["recorded_latency_s"] * backend.time_scale)
            status, code = _error_status(str(out["error"]))
            return err(api, status, f"replayed recorded error {out['error']!r}", code, headers)
        if stream:
            gen = sse_openai(request, body, out, rule) if api == "openai" else sse_anthropic(request, body, out, rule)
            return StreamingResponse(gen, media_type="text/event-stream", headers=headers)
        await wait(request, out["recorded_latency_s"] * backend.time_scale)
        if rule is not None and rule.kind == FaultKind.MALFORMED:
            return Response('{"id": "replay", "choices": [{"message": {"content": "ok', media_type="application/json")
        payload = completion_openai(model, out) if api == "openai" else message_anthropic(model, out)
        return JSONResponse(payload, headers=headers)

    async def apply_fault_early(request: Request, api: str, rule: FaultRule, stream: bool) -> Response | None:
        k = rule.kind
        if k == FaultKind.TIMEOUT or (not stream and k in (FaultKind.STALL_BEFORE_FIRST_TOKEN,
                                                            FaultKind.STALL_AFTER_FIRST_TOKEN)):
            await wait(request, rule.delay_s)
            return err(api, 504, "replay fault: timeout", "timeout")
        if k == FaultKind.RESET or (not stream and k == FaultKind.RESET_AFTER_FIRST_TOKEN):
            return await reset(request)
        if k in (FaultKind.HTTP_5XX, FaultKind.HTTP_429, FaultKind.HTTP_4XX):
            h = {}
            if rule.retry_after_s is not None:
                h["retry-after"] = f"{rule.retry_after_s:g}"
            code = rule.code or {FaultKind.HTTP_429: "rate_limit_exceeded", FaultKind.HTTP_5XX: "server_error"}.get(
                k, "invalid_request"
            )
            msg = f"replay fault: {k.value}" + (" (maximum context length exceeded)" if "context" in code else "")
            return err(api, rule.http_status, msg, code, h)
        return None

    def completion_openai(model: str, out: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": out["content"]}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": out["input_tokens"],
                "completion_tokens": out["output_tokens"],
                "total_tokens": out["input_tokens"] + out["output_tokens"],
            },
            "router_rl": _public(out),
        }

    def message_anthropic(model: str, out: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:12]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": out["content"]}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": out["input_tokens"], "output_tokens": out["output_tokens"]},
            "router_rl": _public(out),
        }

    def pieces(content: str) -> list[str]:
        words = content.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def sse_openai(
        request: Request, body: dict[str, Any], out: dict[str, Any], rule: FaultRule | None
    ) -> AsyncIterator[bytes]:
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = body["model"]
        kind = rule.kind if rule else None
        total = out["recorded_latency_s"] * backend.time_scale

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            d = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(d)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        if kind == FaultKind.MALFORMED:
            yield b'data: {"id": "broken", "choices": [{"delta": {"content": "o\n\n'
            return
        if kind == FaultKind.STALL_BEFORE_FIRST_TOKEN:
            await wait(request, rule.delay_s if rule else 0)
            return
        ps = pieces(out["content"])
        await wait(request, 0.3 * total)
        for i, p in enumerate(ps):
            if i > 0:
                await wait(request, 0.7 * total / max(1, len(ps) - 1))
            yield chunk({"content": p})
            if i == 0 and kind == FaultKind.STALL_AFTER_FIRST_TOKEN:
                await wait(request, rule.delay_s if rule else 0)
                return
            if i == 0 and kind == FaultKind.RESET_AFTER_FIRST_TOKEN:
                await asyncio.sleep(0.02)  # let the first chunk reach the client
                _abort(request.scope.get(_TRANSPORT_KEY))
                return
        yield chunk({}, "stop", router_rl=_public(out))
        if (body.get("stream_options") or {}).get("include_usage"):
            u = {"prompt_tokens": out["input_tokens"], "completion_tokens": out["output_tokens"],
                 "total_tokens": out["input_tokens"] + out["output_tokens"]}
            d = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                 "choices": [], "usage": u}
            yield f"data: {json.dumps(d)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def sse_anthropic(
        request: Request, body: dict[str, Any], out: dict[str, Any], rule: FaultRule | None
    ) -> AsyncIterator[bytes]:
        kind = rule.kind if rule else None
        total = out["recorded_latency_s"] * backend.time_scale

        def ev(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        msg = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": body["model"],
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": out["input_tokens"], "output_tokens": 1}}
        yield ev("message_start", {"message": msg})
        if kind == FaultKind.MALFORMED:
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"te\n\n'
            return
        if kind == FaultKind.STALL_BEFORE_FIRST_TOKEN:
            await wait(request, rule.delay_s if rule else 0)
            return
        yield ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        ps = pieces(out["content"])
        await wait(request, 0.3 * total)
        for i, p in enumerate(ps):
            if i > 0:
                await wait(request, 0.7 * total / max(1, len(ps) - 1))
            yield ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
            if i == 0 and kind == FaultKind.STALL_AFTER_FIRST_TOKEN:
                await wait(request, rule.delay_s if rule else 0)
                return
            if i == 0 and kind == FaultKind.RESET_AFTER_FIRST_TOKEN:
                await asyncio.sleep(0.02)
                _abort(request.scope.get(_TRANSPORT_KEY))
                return
        yield ev("content_block_stop", {"index": 0})
        yield ev("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": out["output_tokens"]}})
        yield ev("message_stop", {})

    # ---- routes ---------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await handle(request, "openai")

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await handle(request, "anthropic")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        if not backend.check_key(request.headers):
            return err("openai", 401, "invalid api key", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return err("openai", 400, "request body is not valid JSON", "invalid_json")
        inputs = body.get("input") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            return err("openai", 400, "field 'input' must be a string or a list of strings", "invalid_request")
        backend.record({"api": "embeddings", "model": body.get("model"), "task_id": None, "match": None,
                        "stream": False, "fault": None})
        data = [{"object": "embedding", "index": i, "embedding": _embed(x)} for i, x in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": sum(max(1, len(x) // 4) for x in inputs), "total_tokens": 0}})

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if not backend.check_key(request.headers):
            return err("openai", 401, "invalid api key", "invalid_api_key")
        data = [{"id": m, "object": "model", "created": 0, "owned_by": backend.provider_of(m) or "replay",
                 "type": "model", "display_name": m} for m in backend.models]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/api/tags")
    async def tags() -> Response:
        models = [{"name": m, "model": m, "modified_at": "1970-01-01T00:00:00Z", "size": 0, "digest": _sha(m),
                   "details": {"family": "replay"}} for m in backend.models]
        return JSONResponse({"models": models})

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

    async def _set_faults(request: Request, append: bool) -> Response:
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
        try:
            (backend.faults.add if append else backend.faults.replace)(
                data.get("faults", []) if isinstance(data, dict) else data
            )
        except ConfigError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        return JSONResponse({"faults": backend.faults.to_list()})

    @app.put("/admin/faults")
    async def put_faults(request: Request) -> Response:
        return await _set_faults(request, append=False)

    @app.post("/admin/faults")
    async def post_faults(request: Request) -> Response:
        return await _set_faults(request, append=True)

    @app.delete("/admin/faults")
    async def delete_faults() -> Response:
        backend.faults.clear()
        return JSONResponse({"faults": []})

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


def _public(out: dict[str, Any]) -> dict[str, Any]:
    return {k: out[k] for k in ("task_id", "quality", "verdict", "recorded_latency_s", "cost_usd")}


def _embed(text: str, dim: int = 16) -> list[float]:
    """Deterministic unit-norm pseudo-embedding of ``text`` (hash-seeded)."""
    seed = int(_sha(text)[:16], 16)
    v = np.random.default_rng(seed).standard_normal(dim)
    return [float(x) for x in v / np.linalg.norm(v)]


# --- hosting -----------------------------------------------------------------------------------------
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ReplayBackendServer:
    """Run a :class:`ReplayBackend` under uvicorn in a background thread on 127.0.0.1.

    Example::

        with ReplayBackendServer(ReplayBackend.simulated(100, seed=0), time_scale=0.01) as srv:
            print(srv.base_url)   # http://127.0.0.1:<port>

    Args:
        backend: The backend to serve.
        port: TCP port (0 = a free one).
        startup_timeout_s: How long :meth:`start` waits for the server.
    """

    def __init__(self, backend: ReplayBackend, *, port: int = 0, startup_timeout_s: float = 10.0) -> None:
        self.backend = backend
        self._port = port
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._sock: socket.socket | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._bound_port is None:
            raise RuntimeError("ReplayBackendServer is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for OpenAI clients)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReplayBackendServer:
        """Bind, start the thread and wait until the server accepts connections."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._sock = sock
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            build_app(self.backend), log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1, timeout_keep_alive=5, ws="none",
        )
        self._server = uvicorn.Server(config)
        self.backend.on_kill = self._request_exit
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"replay-backend-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"replay backend did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)
        return self

    def _request_exit(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wait_stopped(self, timeout_s: float = 10.0) -> bool:
        """Wait for the server thread to end (e.g. after ``/admin/kill``); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and join the thread."""
        self._request_exit()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout_s)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ReplayBackendServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(backend: ReplayBackend, *, host: str = "127.0.0.1", port: int = 8088, allow_remote: bool = False) -> None:
    """Serve ``backend`` in the foreground until Ctrl-C or ``POST /admin/kill``.

    Args:
        backend: What to serve.
        host: Bind address; loopback only unless ``allow_remote``.
        port: TCP port.
        allow_remote: Permit a non-loopback ``host`` (the admin endpoints are unauthenticated).
    """
    import uvicorn

    if host not in _LOOPBACK and not allow_remote:
        raise ConfigError("replay.host", f"{host!r} is not a loopback address; pass allow_remote=True to expose it")
    config = uvicorn.Config(build_app(backend), host=host, port=port, log_level="info", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=2, ws="none")
    server = uvicorn.Server(config)

    def _exit() -> None:
        server.should_exit = True

    backend.on_kill = _exit
    server.run()


def load_backend(
    traces_path: str | Path | None,
    *,
    faults: str | Path | list[FaultRule | dict[str, Any]] | None = None,
    seed: int = 0,
    time_scale: float = 1.0,
    n_tasks: int = 200,
    **kw: Any,
) -> ReplayBackend:
    """A backend from a trace file (or a simulated fleet of ``n_tasks`` when ``traces_path`` is None)."""
    rules = load_faults(faults) if isinstance(faults, str | Path) else faults
    if traces_path is None:
        return ReplayBackend.simulated(n_tasks, seed=seed, faults=rules, time_scale=time_scale, **kw)
    return ReplayBackend.from_path(traces_path, faults=rules, seed=seed, time_scale=time_scale, **kw)


def run_replay_backend(
    traces_path: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8088,
    faults: str | Path | list[FaultRule | dict[str, Any]] | None = None,
    seed: int = 0,
    *,
    time_scale: float = 1.0,
    n_tasks: int = 200,
    api_key_env: str | None = None,
    allow_remote: bool = False,
) -> None:
    """Entry point of ``router-rl replay-backend``: load traces and serve them in the foreground.

    Args:
        traces_path: Trace file (see :func:`router_rl.traces.load_traces`); None = simulated fleet.
        host: Bind address (loopback unless ``allow_remote``).
        port: TCP port.
        faults: Fault rules or a JSON/YAML file of them.
        seed: Seed of the simulated fleet and of fault probability draws.
        time_scale: Multiplier of recorded latencies.
        n_tasks: Size of the simulated fleet when ``traces_path`` is None.
        api_key_env: Environment variable holding a key clients must send (optional).
        allow_remote: Permit a non-loopback ``host``.
    """
    import os

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError("replay.api_key_env", f"environment variable {api_key_env} is not set or empty")
    backend = load_backend(traces_path, faults=faults, seed=seed, time_scale=time_scale, n_tasks=n_tasks, api_key=key)
    serve(backend, host=host, port=port, allow_remote=allow_remote)
