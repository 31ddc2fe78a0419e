"""Anthropic Messages API (``/v1/messages``) provider for the cloud tier (no SDK, plain httpx)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from router_rl.providers._http import HTTPProvider, iter_sse
from router_rl.providers.base import (
    CompletionRequest,
    CompletionResult,
    HealthStatus,
    ProviderError,
    ProviderErrorKind,
    StreamChunk,
    Usage,
    register_provider,
)

DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


@register_provider("anthropic")
class AnthropicProvider(HTTPProvider):
    """Claude models over the Messages API.

    Headers ``x-api-key`` and ``anthropic-version`` (option ``anthropic_version``, default
    ``2023-06-01``). System messages are joined into the top-level ``system`` field. Finish
    reasons are normalised to the OpenAI vocabulary (``end_turn`` -> ``stop``,
    ``max_tokens`` -> ``length``); the original is in ``raw``.
    Option ``default_max_tokens`` (1024) is used when a request sets no ``max_tokens`` (the API
    requires it).
    """

    supports_stream = True
    supports_embed = False

    def _headers(self) -> dict[str, str]:
        h = {
            "accept": "application/json",
            "anthropic-version": str(self.config.options.get("anthropic_version", DEFAULT_VERSION)),
        }
        if self._key:
            h["x-api-key"] = self._key.reveal()
        return h

    def build_body(self, req: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """Messages API body: system prompt split out, consecutive roles kept as given."""
        system = [str(m["content"]) for m in req.messages if m.get("role") == "system"]
        messages = [{"role": m["role"], "content": m["content"]} for m in req.messages if m.get("role") != "system"]
        if not messages:
            raise ValueError("CompletionRequest.messages: Anthropic needs at least one non-system message")
        body: dict[str, Any] = {
            "model": req.model,
            "messages": messages,
            "max_tokens": req.max_tokens or int(self.config.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)),
        }
        if system:
            body["system"] = "\n\n".join(system)
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.stop:
            body["stop_sequences"] = list(req.stop)
        body.update(self.extra_body(req))
        if stream:
            body["stream"] = True
        return body

    @staticmethod
    def _finish(reason: Any) -> str | None:
        if reason is None:
            return None
        return _STOP_REASONS.get(str(reason), str(reason))

    def _usage(self, u: Any, req: CompletionRequest, content: str) -> Usage:
        if isinstance(u, dict) and isinstance(u.get("input_tokens"), int):
            out = u.get("output_tokens")
            if isinstance(out, int):
                return Usage(int(u["input_tokens"]), int(out))
            return Usage(int(u["input_tokens"]), self.count_tokens(content), estimated=True)
        return Usage(self.count_tokens(req.prompt_text), self.count_tokens(content), estimated=True)

    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Non-streaming ``POST /v1/messages`` with retries on retryable errors."""
        headers = self.request_headers(req)
        body = self.build_body(req, stream=False)
        url = self.api_root + "/messages"

        async def once() -> CompletionResult:
            data, latency = await self.post_json(url, body, req, headers)
            if data.get("type") == "error":
                code, msg = self.error_message(data)
                raise self._err(ProviderErrorKind.HTTP_5XX, f"error body with HTTP 200: {code} {msg}", req=req)
            blocks = data.get("content")
            if not isinstance(blocks, list):
                raise self._err(ProviderErrorKind.MALFORMED, "response 'content' is not a list", req=req)
            text = "".join(
                str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
            )
            return CompletionResult(
                provider=self.name,
                model=str(data.get("model") or req.model),
                content=text,
                usage=self._usage(data.get("usage"), req, text),
                latency_s=latency,
                ttft_s=None,
                finish_reason=self._finish(data.get("stop_reason")),
                raw=data,
            )

        return await self.with_retries(once)

    async def stream(self, req: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """Streaming Messages API (SSE events); retried only before the first text delta."""
        async for ch in self.stream_with_retries(req, lambda: self._stream_once(req)):
            yield ch

    async def _stream_once(self, req: CompletionRequest) -> AsyncIterator[StreamChunk]:
        headers = {**self.request_headers(req), "accept": "text/event-stream"}
        body = self.build_body(req, stream=True)
        url = self.api_root + "/messages"
        first = started = stopped = False
        parts: list[str] = []
        in_tok: int | None = None
        out_tok: int | None = None
        finish: str | None = None
        try:
            async with self.open_stream(url, body, headers, req) as resp:
                started = True
                async for ev in iter_sse(resp.aiter_lines()):
                    try:
                        data = json.loads(ev.data)
                    except ValueError:
                        raise self._err(ProviderErrorKind.MALFORMED, f"stream event {ev.event!r} is not valid JSON",
                                        req=req, after_first_token=first, retryable=False) from None
                    if not isinstance(data, dict):
                        raise self._err(ProviderErrorKind.MALFORMED, "stream event is not a JSON object", req=req,
                                        after_first_token=first, retryable=False)
                    etype = data.get("type") or ev.event
                    if etype == "message_start":
                        u = (data.get("message") or {}).get("usage") or {}
                        if isinstance(u.get("input_tokens"), int):
                            in_tok = int(u["input_tokens"])
                        if isinstance(u.get("output_tokens"), int):
                            out_tok = int(u["output_tokens"])
                    elif etype == "content_block_delta":
                        d = data.get("delta") or {}
                        piece = d.get("text") if d.get("type") == "text_delta" else None
                        if piece:
                            first = True
                            parts.append(str(piece))
                            yield StreamChunk(delta=str(piece))
                    elif etype == "message_delta":
                        finish = self._finish((data.get("delta") or {}).get("stop_reason")) or finish
                        u = data.get("usage") or {}
                        if isinstance(u.get("output_tokens"), int):
                            out_tok = int(u["output_tokens"])
                        if isinstance(u.get("input_tokens"), int):
                            in_tok = int(u["input_tokens"])
                    elif etype == "message_stop":
                        stopped = True
                        break
                    elif etype == "error":
                        code, msg = self.error_message(data)
                        raise self._err(ProviderErrorKind.STREAM_BROKEN, f"server error mid-stream: {code} {msg}",
                                        req=req, after_first_token=first)
                if not stopped:
                    raise self._err(ProviderErrorKind.STREAM_BROKEN, "stream ended before message_stop", req=req,
                                    after_first_token=first)
                content = "".join(parts)
                usage = Usage(
                    in_tok if in_tok is not None else self.count_tokens(req.prompt_text),
                    out_tok if out_tok is not None else self.count_tokens(content),
                    estimated=in_tok is None or out_tok is None,
                )
                yield StreamChunk(delta="", finish_reason=finish, usage=usage)
        except httpx.HTTPError as e:
            raise self.map_transport_error(e, req, streaming=started, after_first_token=first) from None

    async def health(self) -> HealthStatus:
        """``GET /v1/models`` (never raises)."""
        t0 = time.perf_counter()
        try:
            data = await self.get_json(self.api_root + "/models", timeout_s=min(self.config.timeout_s, 10.0))
        except ProviderError as e:
            return HealthStatus(False, time.perf_counter() - t0, str(e))
        n = len(data.get("data") or []) if isinstance(data, dict) else 0
        return HealthStatus(True, time.perf_counter() - t0, f"{n} models")
