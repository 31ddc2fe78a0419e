"""OpenAI-compatible HTTP front of the hybrid router (FastAPI).

Endpoints:

* ``POST /v1/chat/completions`` (stream and non-stream). ``model`` is ``router-rl/auto``, a
  strategy (``router-rl/cost_optimized``, ...) or a concrete model id. The agent is identified
  by the ``x-agent-id`` / ``x-agent-type`` headers or the ``user`` field; ``x-task-category``
  (or ``metadata.category``) and ``x-request-id`` are honoured.
* ``POST /v1/feedback`` (same bearer auth): outcome feedback on a routed request, single or batch
  (:mod:`router_rl.router.feedback`). Every chat response carries its request id: the completion
  ``id`` (``chatcmpl-<request id>``, also on every stream chunk) and the ``x-request-id`` header
  (also on a body refused before routing).
* ``GET /v1/models``; ``GET /health``; ``GET /metrics`` (Prometheus text).
* Admin (admin bearer token): ``GET /admin/state``, ``POST /admin/kill-switch``
  ``{"active": true, "reason": "..."}``, ``POST /admin/rollout`` ``{"percentage": 25}``, and the
  learned policy's versions (:mod:`router_rl.router.live_policy`): ``POST /admin/policy``
  ``{"version": "v0003"}`` or ``{"policy_dir": "..."}`` (hot swap), ``POST /admin/canary``
  ``{"version": "v0004", "share": 0.2}`` (``share`` 0 stops it), ``POST /admin/rollback``
  ``{"role": "canary"|"live", "reason": "..."}`` (both optional).

Errors use the OpenAI error body ``{"error": {"message", "type", "param", "code"}}``. Prompt text
is never logged; bearer tokens are compared in constant time and never echoed.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router_rl.core.asgi import ThreadedASGIServer
from router_rl.providers.base import Usage
from router_rl.router.engine import HybridRouter
from router_rl.router.errors import RouterRequestError
from router_rl.router.feedback import DisabledFeedback, FeedbackService, build_feedback
from router_rl.router.refining import RefineRun
from router_rl.router.request import RoutingDecision
from router_rl.router.stream import StreamSession
from router_rl.router.validation import (  # noqa: F401 (re-exported: the request schema lives there)
    ALLOWED_BODY_FIELDS,
    FORWARDED_FIELDS,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MESSAGE_FIELDS,
    ROUTER_FIELDS,
    BadRequest,
    parse_chat_body,
    parse_json_body,
)

log = logging.getLogger("router_rl.router.server")

_SAFE_PARAM = re.compile(r"[A-Za-z0-9_.\[\]]{1,64}")


class Unauthorized(RouterRequestError):
    """Missing or wrong bearer token."""

    status = 401
    code = "invalid_api_key"


def error_body(message: str, *, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI-format error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_error(e: RouterRequestError, request_id: str | None = None) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if e.status == 401 else {}
    if request_id is not None:
        headers["x-request-id"] = request_id
    return JSONResponse(error_body(str(e), type_=e.type, code=e.code, param=e.param), status_code=e.status,
                        headers=headers)


def create_app(
    router: HybridRouter,
    *,
    api_tokens: frozenset[str] | None = None,
    admin_tokens: frozenset[str] | None = None,
    admin_auth: bool = True,
    close_router: bool = True,
    feedback: FeedbackService | DisabledFeedback | None = None,
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
        feedback: The ``/v1/feedback`` service (built from ``router.config.feedback`` when
            ``None``; closed when the app shuts down).
    """
    admin: frozenset[str] | None = admin_tokens if admin_tokens is not None else (api_tokens or frozenset())
    if not admin_auth:
        admin = None

    fb = feedback if feedback is not None else build_feedback(router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        from router_rl.features.jit import warm_up

        # the request screening's privacy prefilter is a compiled kernel and each upstream pool builds
        # its TLS context on first use: both now (the kernels off the event loop), so no live request pays them
        from router_rl.router.upstream import open_pools

        backend = await asyncio.to_thread(warm_up)
        pools = open_pools(router.providers)  # in this loop: the pools' sessions belong to it
        log.info("router-rl per-request kernels: %s; upstream pools opened: %d", backend, pools)
        yield
        await fb.aclose()
        if close_router:
            await router.aclose()

    app = FastAPI(title="router-rl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.router = router
    app.state.feedback = fb
    fast: dict[tuple[str, str], Any] = {}
    app.add_middleware(_FastRoutes, routes=fast)
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
    async def chat(request: Request) -> Response:  # also served by _FastRoutes (below), same function
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
            rid = router.record_rejected(f"{kind}:{param}" if param else kind, request_id=headers.get("x-request-id"))
            return _json_error(e, rid)
        if not stream:
            try:
                res = await router.route(inp)
            except RouterRequestError as e:  # the engine may name the logged id of a refused request
                return _json_error(e, e.request_id)
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
                "usage": usage_body(r.usage),
            }
            headers = {
                **decision_headers(res.request_id, res.decision, res.served_model, res.fallback_reason),
                "x-router-overhead-ms": f"{res.overhead_s * 1000:.4f}",
                "x-router-backend-ms": f"{(res.total_s - res.overhead_s) * 1000:.4f}",
                **refine_headers(res.refine),
            }
            return JSONResponse(payload, headers=headers)
        try:
            session = await router.route_stream(inp)
        except RouterRequestError as e:
            return _json_error(e, e.request_id)
        headers = {
            **decision_headers(session.request_id, session.decision, session.served_model, session.fallback_reason),
            "cache-control": "no-cache",
        }
        return StreamingResponse(_sse(session, include_usage), media_type="text/event-stream", headers=headers)

    fast[("POST", "/v1/chat/completions")] = chat

    @app.post("/v1/feedback")
    async def post_feedback(request: Request) -> JSONResponse:
        check(request, api_tokens)
        raw = await request.body()
        body = parse_json_body(raw)
        out = await fb.handle(body, header_key=request.headers.get("idempotency-key"), body_bytes=len(raw))
        return JSONResponse(out)

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
            "policy": router.policies.state(),
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

    def opt_str(body: dict[str, Any], name: str) -> str | None:
        v = body.get(name)
        if v is not None and (not isinstance(v, str) or not v or len(v) > 4096):
            raise BadRequest(f"{name}: expected a non-empty string", param=name)
        return v

    def policy_body(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        extra = sorted(set(body) - allowed)
        if extra:
            raise BadRequest(f"unknown field(s) {extra}; expected some of {sorted(allowed)}", param=str(extra[0]))
        return body

    @app.post("/admin/policy")
    async def admin_policy(request: Request) -> JSONResponse:
        admin_check(request)
        body = policy_body(await read_json(request), frozenset({"version", "policy_dir", "reason", "actor"}))
        version, pdir = opt_str(body, "version"), opt_str(body, "policy_dir")
        if (version is None) == (pdir is None):
            raise BadRequest("give exactly one of version / policy_dir", param="version")
        await router.policies.swap(version=version, policy_dir=Path(pdir) if pdir else None,
                                   reason=opt_str(body, "reason") or "admin", actor=opt_str(body, "actor") or "admin")
        return JSONResponse(state())

    @app.post("/admin/canary")
    async def admin_canary(request: Request) -> JSONResponse:
        admin_check(request)
        body = policy_body(await read_json(request), frozenset({"version", "policy_dir", "share", "reason", "actor"}))
        version, pdir = opt_str(body, "version"), opt_str(body, "policy_dir")
        share = body.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float):
            raise BadRequest("share: expected a number in [0, 1)", param="share")
        if version is not None and pdir is not None:
            raise BadRequest("give only one of version / policy_dir", param="version")
        if share > 0 and version is None and pdir is None:
            raise BadRequest("share > 0 needs version or policy_dir", param="version")
        await router.policies.set_canary(version=version, policy_dir=Path(pdir) if pdir else None,
                                         share=float(share), reason=opt_str(body, "reason") or "admin",
                                         actor=opt_str(body, "actor") or "admin")
        return JSONResponse(state())

    @app.post("/admin/rollback")
    async def admin_rollback(request: Request) -> JSONResponse:
        admin_check(request)
        raw = await request.body()
        body = policy_body(parse_json_body(raw) if raw.strip() else {}, frozenset({"role", "reason", "actor"}))
        await router.policies.rollback(role=opt_str(body, "role"), reason=opt_str(body, "reason") or "manual",
                                       actor=opt_str(body, "actor") or "admin")
        return JSONResponse(state())

    return app


def decision_headers(request_id: str, d: RoutingDecision, served: str, fallback_reason: str | None) -> dict[str, str]:
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


def refine_headers(run: RefineRun | None) -> dict[str, str]:
    """``x-router-refine-*`` headers of a refined answer (none when the request was not refined)."""
    if run is None:
        return {}
    f = run.log_fields()
    h = {"x-router-refine-iterations": str(f["refine_iterations"]), "x-router-refine-stop": str(f["refine_stop"]),
         "x-router-refine-model": run.model}
    if f["refine_final_score"] is not None:
        h["x-router-refine-score"] = f"{f['refine_final_score']:.4f}"
    return h


class _FastRoutes:
    """Pure ASGI middleware: the hot endpoints straight to their handler, past FastAPI's routing.

    ``routes`` maps an exact ``(method, path)`` to the same ``async (Request) -> Response``
    function FastAPI has registered for it; the handler catches the errors it answers itself
    (``RouterRequestError``), anything else reaches :class:`_CatchAll` (a logged 500, as FastAPI's
    handler answers it). FastAPI's per-request machinery (route matching, dependency solving,
    its exception and exit-stack middlewares) costs about a fifth of the router's CPU per request
    at a zero-latency backend. Other methods and paths (405, 404, a trailing slash) go to FastAPI.
    """

    def __init__(self, app: Any, routes: dict[tuple[str, str], Any]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)


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


def usage_body(u: Usage) -> dict[str, Any]:
    """OpenAI ``usage`` object; ``"estimated": true`` is added when the backend reported no usage."""
    out: dict[str, Any] = {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                           "total_tokens": u.input_tokens + u.output_tokens}
    if u.estimated:
        out["estimated"] = True
    return out


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
        usage = usage_body(u) if u is not None else None
        obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
               "usage": usage}
        yield b"data: " + json.dumps(obj).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


class RouterServer(ThreadedASGIServer):
    """The router's HTTP server with uvicorn in a background thread (tests, benchmarks).

    :class:`router_rl.core.asgi.ThreadedASGIServer` with the router's defaults: lifespan on (providers
    closed and the decision log flushed at shutdown) and a long keep-alive (see ``server.keep_alive_s``).

    Args:
        app: The ASGI app (:func:`create_app`).
        host: Interface to bind (loopback only).
        port: Port (0 = pick a free one; read :attr:`port`).
        log_level: uvicorn log level.
        keep_alive_s: Idle keep-alive seconds of a client connection.
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", keep_alive_s: int = 75
    ) -> None:
        super().__init__(app, host=host, port=port, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5,
                         timeout_keep_alive=keep_alive_s, name="router-server")


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
    # uvloop + httptools named, not "auto": a missing one fails here instead of a silent slower server
    uvicorn.run(app, host=h, port=p, log_level="info", access_log=False, loop="uvloop", http="httptools",
                timeout_keep_alive=math.ceil(cfg.server.keep_alive_s))
