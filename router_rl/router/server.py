"""OpenAI-compatible HTTP front of the hybrid router (FastAPI).

Endpoints:

* ``POST /v1/chat/completions`` (stream and non-stream). ``model`` is ``router-rl/auto``, a
  strategy (``router-rl/cost_optimized``, ...) or a concrete model id. The agent is identified
  by the ``x-agent-id`` / ``x-agent-type`` headers or the ``user`` field; ``x-task-category``
  (or ``metadata.category``) and ``x-request-id`` are honoured.
* ``GET /v1/models``; ``GET /health``; ``GET /metrics`` (Prometheus text).
* Admin (admin bearer token): ``GET /admin/state``, ``POST /admin/kill-switch``
  ``{"active": true, "reason": "..."}``, ``POST /admin/rollout`` ``{"percentage": 25}``.

Errors use the OpenAI error body ``{"error": {"message", "type", "param", "code"}}``. Prompt text
is never logged; bearer tokens are compared in constant time and never echoed.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router_rl.router.engine import (
    Decision,
    HybridRouter,
    RouteInput,
    RouterRequestError,
    StreamSession,
)

log = logging.getLogger("router_rl.router.server")

#: Fields the router acts on itself.
ROUTER_FIELDS = frozenset(
    {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "stop", "user", "n",
     "stream_options", "metadata"}
)
#: Sampling fields forwarded unchanged to the chosen model (``CompletionRequest.extra``).
FORWARDED_FIELDS = frozenset({"top_p", "seed", "presence_penalty", "frequency_penalty"})
ALLOWED_BODY_FIELDS = ROUTER_FIELDS | FORWARDED_FIELDS
#: Keys accepted in one chat message.
MESSAGE_FIELDS = frozenset({"role", "content"})
MAX_BODY_BYTES = 8 * 1024 * 1024
_SAFE_PARAM = re.compile(r"[A-Za-z0-9_.\[\]]{1,64}")
#: Deepest JSON nesting accepted in a request body (the chat schema needs 5).
MAX_JSON_DEPTH = 32


class BadRequest(RouterRequestError):
    """Malformed request body."""

    status = 400


class Unauthorized(RouterRequestError):
    """Missing or wrong bearer token."""

    status = 401
    code = "invalid_api_key"


def error_body(message: str, *, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI-format error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_error(e: RouterRequestError) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(error_body(str(e), type_=e.type, code=e.code, param=e.param), status_code=e.status,
                        headers=headers)


def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        parts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise BadRequest(f"messages[{i}].content[{j}]: only text parts are supported",
                                 param=f"messages[{i}].content")
            parts.append(p["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise BadRequest(f"messages[{i}].content: expected a string or a list of text parts",
                     param=f"messages[{i}].content")


class _NonFinite:
    """Placeholder the decoder puts where a body holds NaN / Infinity / an overflowing float."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _finite_float(text: str) -> float | _NonFinite:
    v = float(text)
    return v if math.isfinite(v) else _NonFinite(text)


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "<body>"


def _deep_key(raw: bytes) -> str | None:
    """Top-level key under which ``raw`` first nests deeper than :data:`MAX_JSON_DEPTH` (a bounded scan)."""
    depth, in_str, esc, start, last, key = 0, False, False, 0, None, None
    for i, b in enumerate(raw):
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str, last = False, raw[start:i]
        elif b == 0x22:
            in_str, start = True, i + 1
        elif b == 0x3A and depth == 1 and last is not None:  # ':' after a top-level key
            key = last.decode("utf-8", "replace")
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return key
        elif b in (0x5D, 0x7D):
            depth -= 1
    return None


def parse_json_body(raw: bytes) -> Any:
    """Decode a JSON request body, refusing what no OpenAI field can hold.

    Refused with :class:`BadRequest` (HTTP 400, naming the field where there is one): bodies over
    :data:`MAX_BODY_BYTES`, invalid UTF-8 / JSON, ``NaN`` / ``Infinity`` / overflowing numbers,
    nesting deeper than :data:`MAX_JSON_DEPTH`, strings holding lone UTF-16 surrogates
    (``"\\ud800"``), which no provider accepts and no log can encode.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw, parse_constant=_NonFinite, parse_float=_finite_float)
    except RecursionError:
        key = _deep_key(raw[:65_536])
        where = f"{key}: " if key else "request body "
        raise BadRequest(f"{where}nests deeper than {MAX_JSON_DEPTH} levels", param=key) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON (line {getattr(e, 'lineno', '?')})") from None
    except ValueError as e:  # e.g. an integer literal over Python's digit limit
        raise BadRequest(f"request body holds an unparseable number: {str(e)[:80]}") from None
    stack: list[tuple[Any, list[str | int]]] = [(body, [])]
    while stack:  # iterative: depth and string checks without recursion
        node, at = stack.pop()
        if len(at) > MAX_JSON_DEPTH:
            raise BadRequest(f"{_path(at[:MAX_JSON_DEPTH])}: nests deeper than {MAX_JSON_DEPTH} levels",
                             param=_path(at[:1]))
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{_path(at)}: string holds a lone UTF-16 surrogate; expected valid Unicode",
                                 param=_path(at)) from None
        elif isinstance(node, dict):
            for k, v in node.items():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadRequest(f"{_path(at)}: a key holds a lone UTF-16 surrogate", param=_path(at)) from None
                stack.append((v, [*at, k]))
        elif isinstance(node, list):
            stack.extend((v, [*at, i]) for i, v in enumerate(node))
        elif isinstance(node, _NonFinite):
            raise BadRequest(f"{_path(at)}: {node.text} is not a finite number", param=_path(at))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > 2**63:
            raise BadRequest(f"{_path(at)}: integer out of range", param=_path(at))
    return body


def parse_chat_body(body: Any, headers: dict[str, str]) -> tuple[RouteInput, bool, bool]:
    """Validate a chat-completions body into a :class:`RouteInput`.

    Returns:
        ``(input, stream, include_usage)``.

    Raises:
        BadRequest: naming the offending field.
    """
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_BODY_FIELDS)
    if unknown:  # never silently dropped: tools, response_format, logprobs... are refused
        raise BadRequest(
            f"unknown or unsupported field(s) {unknown}; supported: {sorted(ALLOWED_BODY_FIELDS)}", param=unknown[0]
        )
    params: dict[str, Any] = {}
    for k in sorted(FORWARDED_FIELDS & set(body)):
        v = body[k]
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise BadRequest(f"{k}: expected a finite number", param=k)
        params[k] = v
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: expected a non-empty string", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: expected a non-empty array of {role, content} objects", param="messages")
    messages: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}]: expected an object with a string 'role'", param=f"messages[{i}]")
        if m["role"] not in ("system", "user", "assistant", "developer", "tool"):
            raise BadRequest(f"messages[{i}].role: unknown role {m['role']!r}", param=f"messages[{i}].role")
        extra = sorted(set(m) - MESSAGE_FIELDS)
        if extra:  # name, tool_calls, tool_call_id... are refused, never silently dropped or forwarded unscanned
            raise BadRequest(
                f"messages[{i}].{extra[0]}: unsupported message field; supported: {sorted(MESSAGE_FIELDS)}",
                param=f"messages[{i}].{extra[0]}",
            )
        messages.append({"role": m["role"], "content": _text(m.get("content"), i)})
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: expected a boolean", param="stream")
    mt_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(mt_field)
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest(f"{mt_field}: expected a positive integer", param=mt_field)
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise BadRequest("temperature: expected a number in [0, 2]", param="temperature")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop: expected a string or an array of strings", param="stop")
    n = body.get("n", 1)
    if isinstance(n, bool) or n != 1:
        raise BadRequest("n: only n=1 is supported", param="n")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user: expected a string", param="user")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata: expected an object", param="metadata")
    for k in ("agent_type", "category"):
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise BadRequest(f"metadata.{k}: expected a string", param=f"metadata.{k}")
    so = body.get("stream_options") or {}
    if not isinstance(so, dict):
        raise BadRequest("stream_options: expected an object", param="stream_options")
    if not isinstance(so.get("include_usage", False), bool):
        raise BadRequest("stream_options.include_usage: expected a boolean", param="stream_options.include_usage")
    inp = RouteInput(
        messages=messages,
        model=model,
        request_id=headers.get("x-request-id") or None,
        agent_id=headers.get("x-agent-id") or user or None,
        agent_type=headers.get("x-agent-type") or meta.get("agent_type") or None,
        category=headers.get("x-task-category") or meta.get("category") or None,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        stop=stop,
        params=params,
        metadata=dict(meta),
    )
    return inp, stream, bool(so.get("include_usage", False))


def create_app(
    router: HybridRouter,
    *,
    api_tokens: frozenset[str] | None = None,
    admin_tokens: frozenset[str] | None = None,
    admin_auth: bool = True,
    close_router: bool = True,
) -> FastAPI:
    """The FastAPI application serving ``router``.

    Args:
        router: The router.
        api_tokens: Accepted bearer tokens for ``/v1/*`` (``None`` = auth disabled).
        admin_tokens: Accepted bearer tokens for ``/admin/*`` (``None`` = same as ``api_tokens``;
            an empty set, or ``None`` with ``api_tokens`` also ``None``, refuses every admin call).
        admin_auth: ``False`` opens the admin endpoints without a token (explicit opt-out only;
            disabling client auth never opens them).
        close_router: Close the router (providers, decision log) when the app shuts down.
    """
    admin: frozenset[str] | None = admin_tokens if admin_tokens is not None else (api_tokens or frozenset())
    if not admin_auth:
        admin = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_router:
            await router.aclose()

    app = FastAPI(title="router-rl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.router = router
    app.add_middleware(_CatchAll)

    def check(request: Request, tokens: frozenset[str] | None) -> None:
        if tokens is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        if not any(hmac.compare_digest(given.strip().encode(), t.encode()) for t in tokens):
            raise Unauthorized("invalid bearer token")

    @app.exception_handler(RouterRequestError)
    async def _router_error(request: Request, exc: RouterRequestError) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        t = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), type_=t), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error while serving %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse(error_body("internal router error", type_="server_error", code="internal_error"),
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid request", type_="invalid_request_error"), status_code=400)

    async def read_json(request: Request) -> Any:
        return parse_json_body(await request.body())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            check(request, api_tokens)
            body = await read_json(request)
            inp, stream, include_usage = parse_chat_body(body, headers)
        except RouterRequestError as e:  # refused before routing: still one decision-log row
            kind = e.code or type(e).__name__
            param = e.param if e.param and _SAFE_PARAM.fullmatch(e.param) else None
            if param is not None and router.screener.text_is_sensitive(param):
                param = None  # a field *name* can be a pasted secret too
            router.record_rejected(f"{kind}:{param}" if param else kind, request_id=headers.get("x-request-id"))
            raise
        if not stream:
            res = await router.route(inp)
            r = res.result
            payload = {
                "id": f"chatcmpl-{res.request_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": res.served_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": r.content},
                        "finish_reason": r.finish_reason or "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": r.usage.input_tokens,
                    "completion_tokens": r.usage.output_tokens,
                    "total_tokens": r.usage.input_tokens + r.usage.output_tokens,
                },
            }
            headers = {
                **decision_headers(res.request_id, res.decision, res.served_model, res.fallback_reason),
                "x-router-overhead-ms": f"{res.overhead_s * 1000:.4f}",
                "x-router-backend-ms": f"{(res.total_s - res.overhead_s) * 1000:.4f}",
            }
            return JSONResponse(payload, headers=headers)
        session = await router.route_stream(inp)
        headers = {
            **decision_headers(session.request_id, session.decision, session.served_model, session.fallback_reason),
            "cache-control": "no-cache",
        }
        return StreamingResponse(_sse(session, include_usage), media_type="text/event-stream", headers=headers)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        check(request, api_tokens)
        return JSONResponse({"object": "list", "data": router.models_list()})

    @app.get("/health")
    async def health() -> JSONResponse:
        states = router.breaker_states()
        ok = any(s != "open" for s in states.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "breakers": states, "kill_switch": router.kill_switch_active},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(router.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def admin_check(request: Request) -> None:
        if admin is not None and not admin:
            raise Unauthorized("admin endpoints are disabled (no admin token configured)")
        check(request, admin)

    def state() -> dict[str, Any]:
        return {
            "kill_switch": router.kill_switch_active,
            "kill_switch_reason": router.kill_switch_reason,
            "rollout_percentage": router.ab_percentage,
            "rollout_candidate": router.config.rollout.candidate,
            "default_strategy": router.config.strategy.value,
            "breakers": router.breaker_states(),
            "emergency_cloud_count": router.emergency_cloud_count,
            "budget": router.budget_state(),
        }

    @app.get("/admin/state")
    async def admin_state(request: Request) -> JSONResponse:
        admin_check(request)
        return JSONResponse(state())

    @app.post("/admin/kill-switch")
    async def kill_switch(request: Request) -> JSONResponse:
        admin_check(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            raise BadRequest("active: expected a boolean", param="active")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("reason: expected a string", param="reason")
        router.set_kill_switch(body["active"], reason)
        return JSONResponse(state())

    @app.post("/admin/rollout")
    async def rollout(request: Request) -> JSONResponse:
        admin_check(request)
        body = await read_json(request)
        pct = body.get("percentage") if isinstance(body, dict) else None
        if isinstance(pct, bool) or not isinstance(pct, int | float):
            raise BadRequest("percentage: expected a number in [0, 100]", param="percentage")
        try:
            router.set_rollout_percentage(float(pct))
        except ValueError as e:
            raise BadRequest(str(e), param="percentage") from None
        return JSONResponse(state())

    return app


def decision_headers(request_id: str, d: Decision, served: str, fallback_reason: str | None) -> dict[str, str]:
    """Response headers that say what decided and what served (see ``docs/router.md``).

    ``x-router-strategy`` names the policy that actually produced the decision (``learned`` only
    when the learned policy answered; the rule's name, e.g. ``balanced``, when the rule answered
    for it), ``x-router-requested-strategy`` what the request asked for, ``x-router-policy`` the
    exact policy version, ``x-router-decision-note`` why the decider differs (``policy_timeout``,
    ``kill_switch``, ``privacy_override``...).
    """
    h = {
        "x-request-id": request_id,
        "x-router-strategy": d.decided_by,
        "x-router-requested-strategy": d.strategy,
        "x-router-policy": d.policy_version,
        "x-router-chosen-model": d.chosen,
        "x-router-model": served,
    }
    if d.note:
        h["x-router-decision-note"] = d.note
    if fallback_reason:
        h["x-router-fallback-reason"] = fallback_reason
    return h


class _CatchAll:
    """Pure ASGI middleware: an unexpected exception becomes a logged 500 without tearing the connection.

    (Starlette's own last-resort handler re-raises after answering, which makes the server drop
    the keep-alive connection; here the exception stops, so the next request on it is served.)
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            log.error("internal error while serving %s: %s", scope.get("path"), type(exc).__name__)
            if started:
                raise
            body = json.dumps(error_body("internal router error", type_="server_error", code="internal_error"))
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body.encode()})


async def _sse(session: StreamSession, include_usage: bool) -> AsyncIterator[bytes]:
    rid = f"chatcmpl-{session.request_id}"
    created = int(time.time())
    model = session.served_model

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        obj = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    finish: str | None = None
    async for ev in session.events():
        if ev.error is not None:
            err = error_body(
                f"upstream stream from {model} broke after the first token; the answer is incomplete",
                type_="server_error",
                code=ev.error,
            )
            yield b"event: error\ndata: " + json.dumps(err).encode() + b"\n\n"
            return
        if ev.delta:
            yield chunk({"content": ev.delta}, None)
        if ev.finish_reason:
            finish = ev.finish_reason
    yield chunk({}, finish or "stop")
    if include_usage:
        u = session.usage
        usage = (
            {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
             "total_tokens": u.input_tokens + u.output_tokens}
            if u is not None
            else None
        )
        obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
               "usage": usage}
        yield b"data: " + json.dumps(obj).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


class RouterServer:
    """Run the router's HTTP server with uvicorn in a background thread (tests, benchmarks).

    Args:
        app: The ASGI app (:func:`create_app`).
        host: Interface to bind (loopback by default).
        port: Port (0 = pick a free one; see :attr:`port` after :meth:`start`).
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", keep_alive_s: int = 75
    ) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        cfg = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                             ws="none", timeout_keep_alive=keep_alive_s)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="router-server")

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> RouterServer:
        """Start and wait until the server accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"router server on {self.base_url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful shutdown (runs the app's lifespan shutdown: providers closed, log flushed)."""
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_server_app(router: HybridRouter) -> FastAPI:
    """:func:`create_app` with tokens read from the router config's ``server.auth`` sources.

    ``auth.enabled: false`` opens ``/v1/*`` only; the admin API stays authenticated unless
    ``auth.admin_enabled: false`` (with no admin token available it answers 401).
    """
    from router_rl.router.config import load_tokens

    auth = router.config.server.auth
    api = load_tokens(auth.tokens_env, auth.tokens_file, setting="server.auth") if auth.enabled else None
    admin = load_tokens(auth.admin_tokens_env, auth.admin_tokens_file, setting="server.auth.admin", required=False)
    return create_app(router, api_tokens=api, admin_tokens=admin or None, admin_auth=auth.admin_enabled)


def serve(config_path: str, *, host: str | None = None, port: int | None = None) -> None:
    """Blocking: load the config, build the router and serve it (``router-rl router serve``).

    Raises:
        ConfigError: bad config, or a non-loopback bind without auth (one line, names the setting).
    """
    import uvicorn

    from router_rl.router.config import check_bind, load_config

    cfg = load_config(config_path)
    h = host or cfg.server.host
    p = port if port is not None else cfg.server.port
    check_bind(h, cfg.server.auth)
    router = HybridRouter.from_config(cfg)
    app = build_server_app(router)
    log.info("router-rl serving %d model(s) on http://%s:%d", len(router.table.models), h, p)
    uvicorn.run(app, host=h, port=p, log_level="info", access_log=False,
                timeout_keep_alive=math.ceil(cfg.server.keep_alive_s))
