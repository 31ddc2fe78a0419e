"""Wire encoders of the replay backend: error bodies, completions and the SSE streams.

Both streaming dialects (OpenAI ``chat.completion.chunk`` and Anthropic ``message_*`` events)
run through ONE paced generator, :func:`paced_stream`: it owns the timing (30% of the recorded
latency before the first token, the rest spread over the others) and the streaming faults
(malformed event, stall before / after the first token, reset after the first token); a
:class:`SSEDialect` only says how each event is spelled.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from fastapi.responses import JSONResponse, Response

from router_rl.replay.faults import FaultKind, FaultRule

#: Sleep ``seconds`` (returning early when the client has gone).
Waiter = Callable[[float], Awaitable[None]]


def error_response(api: str, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    """An error in the dialect of ``api`` (``anthropic`` or OpenAI-style for everything else)."""
    if api == "anthropic":
        etype = {401: "authentication_error", 429: "rate_limit_error", 404: "not_found_error"}.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
    else:
        etype = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": etype, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def public(out: dict[str, Any]) -> dict[str, Any]:
    """The outcome fields the ``router_rl`` JSON field of a response carries."""
    return {k: out[k] for k in ("task_id", "quality", "verdict", "recorded_latency_s", "cost_usd")}


def _usage_openai(out: dict[str, Any]) -> dict[str, int]:
    return {
        "prompt_tokens": out["input_tokens"],
        "completion_tokens": out["output_tokens"],
        "total_tokens": out["input_tokens"] + out["output_tokens"],
    }


def completion_openai(model: str, out: dict[str, Any]) -> dict[str, Any]:
    """Non-streaming OpenAI ``chat.completion`` body."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": out["content"]}, "finish_reason": "stop"}],
        "usage": _usage_openai(out),
        "router_rl": public(out),
    }


def _ollama_final(model: str, out: dict[str, Any], content: str) -> dict[str, Any]:
    ns = int(float(out.get("recorded_latency_s") or 0.0) * 1e9)
    return {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": "stop",
        "total_duration": ns,
        "load_duration": 0,
        "prompt_eval_count": int(out["input_tokens"]),
        "prompt_eval_duration": 0,
        "eval_count": int(out["output_tokens"]),
        "eval_duration": ns,
    }


def chat_ollama(model: str, out: dict[str, Any]) -> dict[str, Any]:
    """Non-streaming body of Ollama's native ``POST /api/chat``."""
    return _ollama_final(model, out, out["content"])


def chat_ollama_lines(model: str, out: dict[str, Any]) -> list[bytes]:
    """Streaming ``/api/chat``: NDJSON, one line per word, then a ``done`` line with the counts."""
    words = str(out["content"]).split(" ")
    lines = [
        json.dumps({"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "message": {"role": "assistant", "content": w if i == 0 else " " + w}, "done": False})
        for i, w in enumerate(words)
    ]
    lines.append(json.dumps(_ollama_final(model, out, "")))
    return [(line + "\n").encode() for line in lines]


def message_anthropic(model: str, out: dict[str, Any]) -> dict[str, Any]:
    """Non-streaming Anthropic ``message`` body."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": out["content"]}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": out["input_tokens"], "output_tokens": out["output_tokens"]},
        "router_rl": public(out),
    }


def pieces(content: str) -> list[str]:
    """The streamed pieces of ``content``: one per word, later ones with their leading space."""
    words = content.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class SSEDialect(Protocol):
    """How one streaming API spells the events of :func:`paced_stream`."""

    def opening(self) -> list[bytes]:
        """Events before anything can go wrong (OpenAI: the role chunk; Anthropic: ``message_start``)."""
        ...

    def malformed(self) -> bytes:
        """A truncated, unparsable event (the ``malformed`` fault)."""
        ...

    def content_start(self) -> list[bytes]:
        """Events opening the content (Anthropic: ``content_block_start``)."""
        ...

    def delta(self, piece: str) -> bytes:
        """One content piece."""
        ...

    def closing(self) -> list[bytes]:
        """Events after the last piece (finish reason, usage, terminator)."""
        ...


class OpenAIDialect:
    """OpenAI ``chat.completion.chunk`` SSE (``data: ...`` lines, ``[DONE]``)."""

    def __init__(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        self.cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        self.model = body["model"]
        self.out = out
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        d = {"id": self.cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(d)}\n\n".encode()

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def malformed(self) -> bytes:
        return b'data: {"id": "broken", "choices": [{"delta": {"content": "o\n\n'

    def content_start(self) -> list[bytes]:
        return []

    def delta(self, piece: str) -> bytes:
        return self._chunk({"content": piece})

    def closing(self) -> list[bytes]:
        events = [self._chunk({}, "stop", router_rl=public(self.out))]
        if self.include_usage:
            d = {"id": self.cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model,
                 "choices": [], "usage": _usage_openai(self.out)}
            events.append(f"data: {json.dumps(d)}\n\n".encode())
        events.append(b"data: [DONE]\n\n")
        return events


class AnthropicDialect:
    """Anthropic ``message_start`` ... ``message_stop`` SSE (``event:`` + ``data:`` lines)."""

    def __init__(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        self.model = body["model"]
        self.out = out

    @staticmethod
    def _ev(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    def opening(self) -> list[bytes]:
        msg = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": self.model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": self.out["input_tokens"], "output_tokens": 1}}
        return [self._ev("message_start", {"message": msg})]

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"te\n\n'

    def content_start(self) -> list[bytes]:
        return [self._ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]

    def delta(self, piece: str) -> bytes:
        return self._ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})

    def closing(self) -> list[bytes]:
        return [
            self._ev("content_block_stop", {"index": 0}),
            self._ev("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                       "usage": {"output_tokens": self.out["output_tokens"]}}),
            self._ev("message_stop", {}),
        ]


def dialect_for(api: str, body: dict[str, Any], out: dict[str, Any]) -> SSEDialect:
    """The SSE dialect of ``api`` (``openai`` or ``anthropic``)."""
    return OpenAIDialect(body, out) if api == "openai" else AnthropicDialect(body, out)


async def paced_stream(
    dialect: SSEDialect,
    out: dict[str, Any],
    rule: FaultRule | None,
    *,
    total_s: float,
    wait: Waiter,
    reset: Callable[[], None],
) -> AsyncIterator[bytes]:
    """The one streaming loop: ``out["content"]`` piece by piece over ``total_s``, with faults.

    Args:
        dialect: How events are spelled.
        out: The replayed outcome (:meth:`ReplayBackend.outcome`).
        rule: The fault picked for this request (None = healthy).
        total_s: Scaled recorded latency: 30% before the first piece, 70% spread over the rest.
        wait: Sleep that returns early when the client has gone.
        reset: Abort the connection with a TCP RST (``reset_after_first_token``).
    """
    kind = rule.kind if rule else None
    for ev in dialect.opening():
        yield ev
    if kind == FaultKind.MALFORMED:
        yield dialect.malformed()
        return
    if kind == FaultKind.STALL_BEFORE_FIRST_TOKEN:
        await wait(rule.delay_s if rule else 0)
        return
    for ev in dialect.content_start():
        yield ev
    ps = pieces(out["content"])
    await wait(0.3 * total_s)
    for i, p in enumerate(ps):
        if i > 0:
            await wait(0.7 * total_s / max(1, len(ps) - 1))
        yield dialect.delta(p)
        if i == 0 and kind == FaultKind.STALL_AFTER_FIRST_TOKEN:
            await wait(rule.delay_s if rule else 0)
            return
        if i == 0 and kind == FaultKind.RESET_AFTER_FIRST_TOKEN:
            await asyncio.sleep(0.02)  # let the first chunk reach the client
            reset()
            return
    for ev in dialect.closing():
        yield ev
