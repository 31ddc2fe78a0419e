"""OpenAI-compatible ``/v1/chat/completions`` provider (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter)."""

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


@register_provider("openai_compatible")
class OpenAICompatibleProvider(HTTPProvider):
    """Talks the OpenAI chat-completions wire format over pooled async HTTP.

    ``config.base_url`` may be the server root or end in ``/v1``. Options
    (``config.options``): ``include_usage`` (default True) asks streams for a final usage chunk
    via ``stream_options``; ``extra_body`` (dict) is merged into every request body.
    """

    supports_stream = True
    supports_embed = True

    def _headers(self) -> dict[str, str]:
        h = {"accept": "application/json"}
        if self._key:
            h["authorization"] = f"Bearer {self._key.reveal()}"
        return h

    def build_body(self, req: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of a chat-completions request."""
        body: dict[str, Any] = {"model": req.model, "messages": [dict(m) for m in req.messages]}
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.stop:
            body["stop"] = list(req.stop)
        body.update(self.config.options.get("extra_body", {}) or {})
        body.update(self.extra_body(req))
        if stream:
            body["stream"] = True
            if self.config.options.get("include_usage", True):
                body["stream_options"] = {"include_usage": True}
        return body

    def _usage(self, data: Any, req: CompletionRequest, content: str) -> Usage:
        u = data.get("usage") if isinstance(data, dict) else None
        if isinstance(u, dict) and isinstance(u.get("prompt_tokens"), int):
            out = u.get("completion_tokens")
            if isinstance(out, int):
                return Usage(int(u["prompt_tokens"]), int(out))
            return Usage(int(u["prompt_tokens"]), self.count_tokens(content), estimated=True)
        prompt_tokens = self.count_tokens(req.prompt_text, req.model)
        return Usage(prompt_tokens, self.count_tokens(content, req.model), estimated=True)

    # --- complete --------------------------------------------------------------------------
    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Non-streaming chat completion with retries on retryable errors."""
        headers = self.request_headers(req)
        body = self.build_body(req, stream=False)
        url = self.api_root + "/chat/completions"

        async def once() -> CompletionResult:
            data, latency = await self.post_json(url, body, req, headers)
            return self._parse_completion(req, data, latency)

        return await self.with_retries(once)

    def _parse_completion(self, req: CompletionRequest, data: dict[str, Any], latency: float) -> CompletionResult:
        if "error" in data and "choices" not in data:
            code, emsg = self.error_message(data)
            raise self._err(ProviderErrorKind.HTTP_5XX, f"error body with HTTP 200: {code} {emsg}", req=req)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._err(ProviderErrorKind.MALFORMED, "response has no choices[0]", req=req)
        msg = choices[0].get("message")
        if not isinstance(msg, dict):
            raise self._err(ProviderErrorKind.MALFORMED, "choices[0].message is missing", req=req)
        content = msg.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise self._err(ProviderErrorKind.MALFORMED, "choices[0].message.content is not a string", req=req)
        return CompletionResult(
            provider=self.name,
            model=str(data.get("model") or req.model),
            content=content,
            usage=self._usage(data, req, content),
            latency_s=latency,
            ttft_s=None,
            finish_reason=choices[0].get("finish_reason"),
            raw=data,
        )

    # --- stream ----------------------------------------------------------------------------
    async def stream(self, req: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """Streaming chat completion (SSE); retried only before the first content token."""
        async for ch in self.stream_with_retries(req, lambda: self._stream_once(req)):
            yield ch

    async def _stream_once(self, req: CompletionRequest) -> AsyncIterator[StreamChunk]:
        headers = {**self.request_headers(req), "accept": "text/event-stream"}
        body = self.build_body(req, stream=True)
        url = self.api_root + "/chat/completions"
        first = False
        started = False
        finished = False
        done = False
        parts: list[str] = []
        try:
            async with self.open_stream(url, body, headers, req) as resp:
                started = True
                usage: Usage | None = None
                finish: str | None = None
                async for ev in iter_sse(resp.aiter_lines()):
                    if ev.data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        data = json.loads(ev.data)
                    except ValueError:
                        raise self._err(
                            ProviderErrorKind.MALFORMED,
                            "stream event is not valid JSON",
                            req=req,
                            after_first_token=first,
                            retryable=False,
                        ) from None
                    if not isinstance(data, dict):
                        raise self._err(ProviderErrorKind.MALFORMED, "stream event is not a JSON object", req=req,
                                        after_first_token=first, retryable=False)
                    if "error" in data:
                        code, emsg = self.error_message(data)
                        raise self._err(ProviderErrorKind.STREAM_BROKEN, f"server error mid-stream: {code} {emsg}",
                                        req=req, after_first_token=first)
                    if isinstance(data.get("usage"), dict) and data["usage"].get("prompt_tokens") is not None:
                        usage = self._usage(data, req, "".join(parts))
                    for choice in data.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta") or {}
                        piece = delta.get("content") if isinstance(delta, dict) else None
                        fr = choice.get("finish_reason")
                        if fr is not None:
                            finish = fr
                            finished = True
                        if piece:
                            first = True
                            parts.append(piece)
                            yield StreamChunk(delta=str(piece), finish_reason=fr)
                        elif fr is not None:
                            yield StreamChunk(delta="", finish_reason=fr)
                if not (done or finished):
                    raise self._err(ProviderErrorKind.STREAM_BROKEN, "stream ended before [DONE]/finish_reason",
                                    req=req, after_first_token=first)
                if usage is None:
                    usage = Usage(self.count_tokens(req.prompt_text, req.model),  # the server sent no usage
                                  self.count_tokens("".join(parts), req.model), estimated=True)
                yield StreamChunk(delta="", finish_reason=finish, usage=usage)
        except httpx.HTTPError as e:
            raise self.map_transport_error(e, req, streaming=started, after_first_token=first) from None

    # --- extras ----------------------------------------------------------------------------
    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        """Embeddings via ``/v1/embeddings`` (first configured model when ``model`` is None)."""
        if not texts:
            return []
        model = model or (self.info.models[0] if self.info.models else None)
        if model is None:
            raise ProviderError(self.name, ProviderErrorKind.UNSUPPORTED, "no model configured for embeddings")
        url = self.api_root + "/embeddings"

        async def once() -> list[list[float]]:
            data, _ = await self.post_json(url, {"model": model, "input": list(texts)}, None, {})
            items = data.get("data")
            if not isinstance(items, list) or len(items) != len(texts):
                raise self._err(ProviderErrorKind.MALFORMED, f"expected {len(texts)} embeddings in 'data'",
                                model=model)
            items = sorted(items, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
            out: list[list[float]] = []
            for i, d in enumerate(items):
                emb = d.get("embedding") if isinstance(d, dict) else None
                if not isinstance(emb, list):
                    raise self._err(ProviderErrorKind.MALFORMED, f"data[{i}].embedding is not a list", model=model)
                out.append([float(x) for x in emb])
            return out

        return await self.with_retries(once)

    async def list_models(self) -> list[str]:
        """Model ids served (``GET /v1/models``)."""
        data = await self.get_json(self.api_root + "/models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._err(ProviderErrorKind.MALFORMED, "/v1/models: 'data' is not a list")
        return [str(d.get("id")) for d in items if isinstance(d, dict)]

    async def health(self) -> HealthStatus:
        """``GET /v1/models``; ok when it answers with a model list (never raises)."""
        t0 = time.perf_counter()
        try:
            models = await self._health_probe()
        except ProviderError as e:
            return HealthStatus(False, time.perf_counter() - t0, str(e))
        return HealthStatus(True, time.perf_counter() - t0, models)

    async def _health_probe(self) -> str:
        models = await self.list_models()
        return f"{len(models)} models"

