"""Shared HTTP machinery of the providers: pooled client, retries, error mapping, SSE parsing."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np

from router_rl.providers.base import (
    CompletionRequest,
    CompletionResult,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderErrorKind,
    Secret,
    StreamChunk,
    Usage,
)
from router_rl.traces.catalog import ModelCatalog

T = TypeVar("T")

_CONTEXT_MARKERS = ("context_length", "context length", "too many tokens", "prompt is too long", "maximum context")
_MAX_DETAIL = 200


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - (time.time() if now is None else now))


def scrub(text: str, secrets: list[str], req: CompletionRequest | None = None) -> str:
    """Remove secrets and prompt fragments from ``text`` and truncate it."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    if req is not None:
        for m in req.messages:
            c = str(m.get("content", ""))
            for frag in (c, c[:40]):
                if len(frag) >= 8 and frag in text:
                    text = text.replace(frag, "<prompt>")
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return text


@dataclass
class SSEEvent:
    """One server-sent event."""

    event: str | None
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Parse server-sent events from text lines (``event:``/``data:`` fields, blank-line dispatch).

    Multiple ``data:`` lines of one event join with newlines (SSE spec); a trailing event
    without a closing blank line is dispatched at the end of the stream.
    """
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data))


class HTTPProvider(Provider):
    """Base of the HTTP providers: an ``httpx.AsyncClient`` per provider, retries with backoff.

    Args:
        config: Validated provider config.
        catalog: Optional shared catalog.
        rng: Generator for the full-jitter backoff.
        transport: Optional httpx transport (tests with in-process apps).
        sleep: Coroutine used to wait between retries (injectable for tests).
    """

    def __init__(
        self,
        config: ProviderConfig,
        *,
        catalog: ModelCatalog | None = None,
        rng: np.random.Generator | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(config, catalog=catalog, rng=rng)
        self._key: Secret | None = config.resolve_api_key()
        self._transport = transport
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        #: Waits (seconds) the last calls slept before retrying, for observability/tests.
        self.backoff_log: list[float] = []

    # --- plumbing --------------------------------------------------------------------------
    @property
    def api_root(self) -> str:
        """The ``.../v1`` URL prefix (``base_url`` may be the server root or end in ``/v1``)."""
        base = self.config.base_url
        return base if base.endswith("/v1") else base + "/v1"

    def _headers(self) -> dict[str, str]:
        return {}

    def _secrets(self) -> list[str]:
        return [self._key.reveal()] if self._key else []

    def _timeout(self, req_timeout: float | None) -> httpx.Timeout:
        read = req_timeout if req_timeout is not None else self.config.timeout_s
        return httpx.Timeout(read, connect=min(self.config.connect_timeout_s, read))

    def client(self) -> httpx.AsyncClient:
        """The pooled client (created lazily in the running event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            limits = httpx.Limits(
                max_connections=self.config.max_connections, max_keepalive_connections=self.config.max_connections,
                keepalive_expiry=self.config.keepalive_expiry_s,
            )
            self._client = httpx.AsyncClient(
                headers=self._headers(),
                timeout=self._timeout(None),
                limits=limits,
                transport=self._transport,
                follow_redirects=False,
            )
            self._client_loop = loop
        return self._client

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None and not self._client.is_closed:
            with contextlib.suppress(RuntimeError):  # the client's event loop is already closed
                await self._client.aclose()
        self._client = None

    def _err(
        self,
        kind: ProviderErrorKind,
        detail: str,
        *,
        req: CompletionRequest | None = None,
        model: str | None = None,
        status: int | None = None,
        after_first_token: bool = False,
        retry_after_s: float | None = None,
        retryable: bool | None = None,
    ) -> ProviderError:
        return ProviderError(
            self.name,
            kind,
            scrub(detail, self._secrets(), req),
            status=status,
            model=model or (req.model if req else None),
            after_first_token=after_first_token,
            retry_after_s=retry_after_s,
            retryable=retryable,
        )

    def map_transport_error(
        self, e: Exception, req: CompletionRequest | None, *, streaming: bool = False, after_first_token: bool = False
    ) -> ProviderError:
        """Translate an httpx exception into a :class:`ProviderError`."""
        name = type(e).__name__
        msg = f"{name}: {e}" if str(e) else name
        if streaming:
            # the response had started: any break is a broken stream
            return self._err(
                ProviderErrorKind.STREAM_BROKEN,
                f"stream interrupted ({msg})",
                req=req,
                after_first_token=after_first_token,
            )
        if isinstance(e, httpx.TimeoutException):
            return self._err(ProviderErrorKind.TIMEOUT, msg, req=req)
        return self._err(ProviderErrorKind.CONNECTION, msg, req=req)

    def error_message(self, body: Any) -> tuple[str, str]:
        """(code/type, message) from an error JSON body (OpenAI and Anthropic shapes)."""
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                code = str(err.get("code") or err.get("type") or "")
                return code, str(err.get("message") or "")
            if isinstance(err, str):
                return "", err
        return "", ""

    def map_status(self, resp: httpx.Response, body_text: str, req: CompletionRequest | None) -> ProviderError:
        """Translate a non-2xx response into a :class:`ProviderError`."""
        status = resp.status_code
        try:
            body = json.loads(body_text) if body_text else None
        except ValueError:
            body = None
        code, message = self.error_message(body)
        if not message and body is None:
            message = body_text.strip()
        detail = f"{code}: {message}" if code else (message or resp.reason_phrase or "error")
        low = f"{code} {message}".lower()
        if status in (401, 403):
            return self._err(ProviderErrorKind.AUTH, detail, req=req, status=status)
        if status == 429:
            ra = parse_retry_after(resp.headers.get("retry-after"))
            return self._err(ProviderErrorKind.HTTP_429, detail, req=req, status=status, retry_after_s=ra)
        if status >= 500:
            ra = parse_retry_after(resp.headers.get("retry-after"))
            return self._err(ProviderErrorKind.HTTP_5XX, detail, req=req, status=status, retry_after_s=ra)
        if status in (400, 413) and any(mk in low for mk in _CONTEXT_MARKERS):
            return self._err(ProviderErrorKind.CONTEXT_TOO_LONG, detail, req=req, status=status)
        return self._err(ProviderErrorKind.HTTP_4XX, detail, req=req, status=status)

    def backoff_s(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Wait before retry number ``attempt + 1`` (full jitter), or ``None`` to give up.

        A server ``Retry-After`` is honoured exactly when it is <= ``backoff_max_s``; a longer
        one means giving up now (the router can fall back instead of blocking).
        """
        cfg = self.config
        if retry_after_s is not None:
            return None if retry_after_s > cfg.backoff_max_s else float(retry_after_s)
        cap = min(cfg.backoff_max_s, cfg.backoff_base_s * (2.0**attempt))
        return float(self.rng.uniform(0.0, cap)) if cap > 0 else 0.0

    async def with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` retrying retryable :class:`ProviderError` up to ``max_retries`` times."""
        attempt = 0
        while True:
            try:
                return await call()
            except ProviderError as e:
                wait = self.backoff_s(attempt, e.retry_after_s) if e.retryable else None
                if wait is None or attempt >= self.config.max_retries:
                    raise e.with_attempts(attempt + 1) from None
                self.backoff_log.append(wait)
                await self._sleep(wait)
                attempt += 1

    async def stream_with_retries(
        self, req: CompletionRequest, once: Callable[[], AsyncIterator[StreamChunk]]
    ) -> AsyncIterator[StreamChunk]:
        """Retry a stream only while no content token has been yielded."""
        attempt = 0
        while True:
            first_token = False
            try:
                async for chunk in once():
                    if chunk.delta:
                        first_token = True
                    yield chunk
                return
            except ProviderError as e:
                retry = e.retryable and not e.after_first_token and not first_token
                wait = self.backoff_s(attempt, e.retry_after_s) if retry else None
                if wait is None or attempt >= self.config.max_retries:
                    raise e.with_attempts(attempt + 1) from None
                self.backoff_log.append(wait)
                await self._sleep(wait)
                attempt += 1

    async def get_json(self, url: str, *, timeout_s: float | None = None) -> Any:
        """GET ``url`` and decode JSON, mapping failures to :class:`ProviderError` (no retries)."""
        try:
            resp = await self.client().get(url, timeout=self._timeout(timeout_s))
        except httpx.HTTPError as e:
            raise self.map_transport_error(e, None) from None
        if resp.status_code >= 300:
            raise self.map_status(resp, resp.text, None)
        try:
            return resp.json()
        except ValueError:
            raise self._err(ProviderErrorKind.MALFORMED, f"GET {url}: response is not JSON") from None

    async def post_json(self, url: str, body: dict[str, Any], req: CompletionRequest | None, headers: dict[str, str]
                        ) -> tuple[Any, float]:
        """POST JSON once; returns (decoded body, latency seconds)."""
        t0 = time.perf_counter()
        try:
            resp = await self.client().post(
                url, json=body, headers=headers, timeout=self._timeout(req.timeout_s if req else None)
            )
        except httpx.HTTPError as e:
            raise self.map_transport_error(e, req) from None
        latency = time.perf_counter() - t0
        if resp.status_code >= 300:
            raise self.map_status(resp, resp.text, req)
        try:
            data = resp.json()
        except ValueError:
            raise self._err(ProviderErrorKind.MALFORMED, f"HTTP {resp.status_code} body is not valid JSON", req=req
                            ) from None
        if not isinstance(data, dict):
            raise self._err(ProviderErrorKind.MALFORMED, "response JSON is not an object", req=req)
        return data, latency

    @contextlib.asynccontextmanager
    async def open_stream(self, url: str, body: dict[str, Any], headers: dict[str, str], req: CompletionRequest
                          ) -> AsyncIterator[httpx.Response]:
        """POST a streaming request; the open response, or its non-2xx status as :meth:`map_status`'s error.

        Transport errors (``httpx.HTTPError``) propagate unmapped: the caller knows whether the
        stream had started.
        """
        async with self.client().stream(
            "POST", url, json=body, headers=headers, timeout=self._timeout(req.timeout_s)
        ) as resp:
            if resp.status_code >= 300:
                text = (await resp.aread()).decode("utf-8", "replace")
                raise self.map_status(resp, text, req)
            yield resp

    @staticmethod
    def request_headers(req: CompletionRequest) -> dict[str, str]:
        """Extra per-request headers from ``req.extra['headers']``."""
        h = req.extra.get("headers") or {}
        if not isinstance(h, dict):
            raise ValueError("CompletionRequest.extra['headers']: expected a dict of str -> str")
        return {str(k): str(v) for k, v in h.items()}

    @staticmethod
    def extra_body(req: CompletionRequest) -> dict[str, Any]:
        """Body fields from ``req.extra`` (everything but ``headers``)."""
        return {k: v for k, v in req.extra.items() if k != "headers"}

    def result_from_stream(
        self,
        req: CompletionRequest,
        parts: list[str],
        usage: Usage | None,
        finish: str | None,
        latency: float,
        ttft: float | None,
        raw: dict[str, Any] | None,
    ) -> CompletionResult:
        """Assemble a :class:`CompletionResult` from streamed pieces."""
        content = "".join(parts)
        if usage is None:
            usage = Usage(self.count_tokens(req.prompt_text, req.model), self.count_tokens(content, req.model),
                          estimated=True)
        return CompletionResult(self.name, req.model, content, usage, latency, ttft, finish, raw)


async def collect_stream(provider: Provider, req: CompletionRequest) -> CompletionResult:
    """Consume :meth:`Provider.stream` into a :class:`CompletionResult` with measured TTFT."""
    t0 = time.perf_counter()
    parts: list[str] = []
    ttft: float | None = None
    usage: Usage | None = None
    finish: str | None = None
    async for ch in provider.stream(req):
        if ch.delta:
            if ttft is None:
                ttft = time.perf_counter() - t0
            parts.append(ch.delta)
        if ch.usage is not None:
            usage = ch.usage
        if ch.finish_reason is not None:
            finish = ch.finish_reason
    latency = time.perf_counter() - t0
    content = "".join(parts)
    if usage is None:
        usage = Usage(provider.count_tokens(req.prompt_text, req.model), provider.count_tokens(content, req.model),
                      estimated=True)
    return CompletionResult(provider.name, req.model, content, usage, latency, ttft, finish, None)
