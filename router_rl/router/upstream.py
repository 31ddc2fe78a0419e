"""The router's upstream HTTP client: an aiohttp connection pool behind the httpx API the providers use.

The HTTP providers (:class:`router_rl.providers._http.HTTPProvider`) talk to their backends
through ``httpx.AsyncClient``. httpx's own pool (httpcore) costs the router most of its CPU per
request (it checks every pooled connection's socket on each request, and its I/O goes through
anyio); the router therefore gives each HTTP provider an :class:`AiohttpTransport`: httpx still
builds the request and reads the response (timeouts, retries, error mapping, streaming and SSE
parsing stay the providers' code), while aiohttp's C-accelerated pool sends it and parses the
answer. ``upstream_client: httpx`` in the router config keeps httpx's own pool.

What is kept from the httpx transport, one for one:

* timeouts: the request's httpx timeouts (``connect``, ``read``, ``pool``) become aiohttp's
  ``sock_connect``, ``sock_read`` (per read, like httpx) and ``connect`` (pool wait + connect);
  no total deadline (the router's attempt / first-token deadlines cancel the call);
* errors: aiohttp's exceptions become the httpx exceptions the providers map
  (:meth:`~router_rl.providers._http.HTTPProvider.map_transport_error`): a timeout is an
  ``httpx.TimeoutException`` (``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``), anything else
  an ``httpx.TransportError`` (``ConnectError``, ``RemoteProtocolError``, ``ReadError``), also
  while a streamed body is being read;
* the pool: ``max_connections`` connections (all hosts together, as httpx), idle connections
  retired after ``keepalive_expiry_s``, no redirects, the body not decompressed here (httpx
  decodes ``content-encoding`` itself), TLS from ``httpx.create_ssl_context()`` (certifi or
  ``SSL_CERT_FILE``), proxies from ``HTTP(S)_PROXY`` / ``ALL_PROXY`` except ``NO_PROXY`` hosts
  (httpx's ``trust_env``; read when the pool opens, once per host, never per request);
* cancellation (a lost hedge, a deadline): aiohttp closes that connection, never reuses it;
  a body not read to its end is closed, not returned to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    import aiohttp
    import numpy as np

    from router_rl.providers.base import CompletionRequest, Provider, ProviderConfig
    from router_rl.traces.catalog import ModelCatalog

#: Values of the router config's ``upstream_client``.
UpstreamClient = Literal["aiohttp", "httpx"]


def _httpx_error(e: BaseException, request: httpx.Request, *, reading: bool) -> httpx.HTTPError:
    """The httpx exception a provider expects for aiohttp's ``e`` (``reading``: the body was being read)."""
    import aiohttp

    msg = str(e) or type(e).__name__
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(msg, request=request)
    if isinstance(e, aiohttp.ServerTimeoutError):  # SocketTimeoutError: a read waited longer than sock_read
        return httpx.ReadTimeout(msg, request=request)
    if isinstance(e, asyncio.TimeoutError):  # the ``connect`` budget (pool wait + connect) ran out
        return (httpx.ReadTimeout if reading else httpx.PoolTimeout)(msg, request=request)
    if isinstance(e, aiohttp.ClientConnectorError):
        return httpx.ConnectError(msg, request=request)
    if isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(msg, request=request)
    if isinstance(e, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(msg, request=request)
    if isinstance(e, aiohttp.ClientOSError | OSError):
        return httpx.ReadError(msg, request=request) if reading else httpx.ConnectError(msg, request=request)
    return httpx.TransportError(msg, request=request)


class _AiohttpBody(httpx.AsyncByteStream):
    """A response body read from aiohttp as it arrives (errors as httpx exceptions)."""

    def __init__(self, resp: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._resp = resp
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self._resp.close()
            raise _httpx_error(e, self._request, reading=True) from None

    async def aclose(self) -> None:
        if self._resp.content.at_eof():
            self._resp.release()  # read to its end: the connection goes back to the pool
        else:
            self._resp.close()  # not read to its end (a broken or abandoned stream): never reused


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests through a pooled ``aiohttp.ClientSession``.

    The session is created on first use in the running event loop (a new one if the loop
    changed or the transport was closed), so a provider may close its client and open a new
    one, as it does with httpx's own transport.

    Args:
        max_connections: Pool size (all hosts together).
        keepalive_expiry_s: Idle seconds after which a pooled connection is closed.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry_s: float) -> None:
        self.max_connections = int(max_connections)
        self.keepalive_expiry_s = float(keepalive_expiry_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._url_proxies: dict[str, str | None] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             keepalive_timeout=self.keepalive_expiry_s, ssl=self._ssl)
            self._proxies, self._url_proxies = {}, {}
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False,
                                                  skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                                                  timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        """The environment's proxy for ``url`` (``None``: direct), cached per scheme and host."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            import urllib.request

            env = urllib.request.getproxies_environment()
            bypass = urllib.request.proxy_bypass_environment(url.host, env) if env.get("no") else False  # type: ignore[attr-defined]
            self._proxies[key] = None if bypass else (env.get(url.scheme) or env.get("all"))
        return self._proxies[key]

    def proxy_for(self, url: str) -> str | None:
        """:meth:`_proxy` of a URL string, cached per string (no URL parsing per request)."""
        if url not in self._url_proxies:
            if len(self._url_proxies) > 1024:
                self._url_proxies.clear()
            self._url_proxies[url] = self._proxy(httpx.URL(url))
        return self._url_proxies[url]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the response's body streams from aiohttp (see the module docstring)."""
        import aiohttp

        t: dict[str, float | None] = request.extensions.get("timeout", {})
        connect, read, pool = t.get("connect"), t.get("read"), t.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect, sock_read=read,
            connect=None if connect is None or pool is None else connect + pool,
        )
        body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        session = self._get_session()
        try:
            resp = await session.request(
                request.method, str(request.url), headers=request.headers.multi_items(), data=body or None,
                timeout=timeout, allow_redirects=False, proxy=self._proxy(request.url),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise _httpx_error(e, request, reading=False) from None
        return httpx.Response(
            resp.status, headers=list(resp.raw_headers), stream=_AiohttpBody(resp, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (resp.reason or "").encode("latin-1", "replace")},
        )

    async def aclose(self) -> None:
        """Close the pooled connections (a later request opens a new session)."""
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # its event loop is already closed
                await self._session.close()
        self._session = None


#: httpx's client default headers (``Accept-Encoding`` without ``br`` / ``zstd``: decoded by aiohttp here)
_HTTPX_DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                          "User-Agent": f"python-httpx/{httpx.__version__}"}


class AiohttpPostMixin:
    """Mixed into an HTTP provider class: :meth:`post_json` (every non-streaming call) straight on aiohttp.

    The provider's own ``post_json`` builds an ``httpx.Request`` and reads an ``httpx.Response``
    (URL parsing, header merging, cookie extraction) for every call: that costs more CPU than
    the send itself. This one sends the same bytes (httpx's JSON encoding: compact, UTF-8,
    ``NaN`` refused; httpx's default headers, the provider's, then the call's, case-insensitively)
    on the provider's :class:`AiohttpTransport` pool, under the same timeouts; a gzip / deflate
    answer is decoded, as httpx does. Failures go to the provider's own mapping: a non-2xx status
    to ``map_status`` (with an ``httpx.Response`` carrying the status, headers and reason), an
    aiohttp exception to ``map_transport_error`` as the httpx exception it stands for. Streams
    and GETs keep the provider's httpx path (on the
    same pool, through the transport).
    """

    _transport: AiohttpTransport

    async def post_json(self, url: str, body: dict[str, Any], req: CompletionRequest | None,
                        headers: dict[str, str]) -> tuple[Any, float]:
        """POST JSON once; returns (decoded body, latency seconds) (see the class docstring)."""
        import json

        import aiohttp
        from multidict import CIMultiDict

        from router_rl.providers.base import ProviderErrorKind

        provider: Any = self
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        h: CIMultiDict[str] = CIMultiDict(_HTTPX_DEFAULT_HEADERS)  # what httpx's client sends by default
        h.update(provider._headers())
        h.update(headers)
        h["Content-Type"] = "application/json"
        t = provider._timeout(req.timeout_s if req else None)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.read,
                                        connect=None if t.connect is None or t.pool is None else t.connect + t.pool)
        transport = self._transport
        session = transport._get_session()
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=payload, headers=h, timeout=timeout, allow_redirects=False,
                                    proxy=transport.proxy_for(url), auto_decompress=True) as resp:
                raw = await resp.read()
                status, reason, resp_headers = resp.status, resp.reason or "", list(resp.raw_headers)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            request = httpx.Request("POST", url)
            reading = isinstance(e, aiohttp.SocketTimeoutError | aiohttp.ClientPayloadError)
            raise provider.map_transport_error(_httpx_error(e, request, reading=reading), req) from None
        latency = time.perf_counter() - t0
        if status >= 300:
            decoded = [(k, v) for k, v in resp_headers  # aiohttp decoded the body already
                       if k.lower() not in (b"content-encoding", b"content-length")]
            response = httpx.Response(status, headers=decoded, content=raw,
                                      extensions={"reason_phrase": reason.encode("latin-1", "replace")})
            raise provider.map_status(response, response.text, req)
        try:
            data = json.loads(raw)
        except ValueError:
            raise provider._err(ProviderErrorKind.MALFORMED, f"HTTP {status} body is not valid JSON", req=req
                                ) from None
        if not isinstance(data, dict):
            raise provider._err(ProviderErrorKind.MALFORMED, "response JSON is not an object", req=req)
        return data, latency

    async def close(self) -> None:
        """Close the httpx client and the aiohttp pool."""
        await super().close()  # type: ignore[misc]
        await self._transport.aclose()


def open_pools(providers: Mapping[str, Any]) -> int:
    """Open every aiohttp pool of ``providers`` in the running event loop; returns how many.

    A pool's first use builds its TLS context (the CA bundle) and its session: a server calls this
    at start-up (``create_app``'s lifespan), so that no live request pays it.
    """
    n = 0
    for provider in providers.values():
        transport = getattr(provider, "_transport", None)
        if isinstance(transport, AiohttpTransport):
            transport._get_session()
            n += 1
    return n


_FAST_CLASSES: dict[type, type] = {}


def _fast_class(cls: type) -> type:
    """``cls`` with :class:`AiohttpPostMixin` in front (one subclass per provider class)."""
    if cls not in _FAST_CLASSES:
        _FAST_CLASSES[cls] = type(cls.__name__, (AiohttpPostMixin, cls), {"__module__": cls.__module__,
                                                                          "__qualname__": cls.__qualname__})
    return _FAST_CLASSES[cls]


def build_router_providers(
    configs: Sequence[ProviderConfig], *, catalog: ModelCatalog, rng: np.random.Generator, client: UpstreamClient
) -> dict[str, Provider]:
    """The router's providers (:func:`~router_rl.providers.base.build_providers`), HTTP ones on the ``client`` pool.

    With ``client="aiohttp"`` every HTTP provider is built with its own :class:`AiohttpTransport`
    sized by its ``max_connections`` / ``keepalive_expiry_s``, and its class gets
    :class:`AiohttpPostMixin` (non-streaming calls straight on that pool); other kinds (and every provider
    with ``client="httpx"``) are built exactly as :func:`~router_rl.providers.base.build_providers`
    builds them.
    """
    from router_rl.providers._http import HTTPProvider
    from router_rl.providers.base import build_providers

    out = build_providers(configs, catalog=catalog, rng=rng)  # validates kinds, keys and unique names
    if client == "httpx":
        return out
    for name, p in out.items():
        if isinstance(p, HTTPProvider):
            cfg = p.config
            out[name] = _fast_class(type(p))(cfg, catalog=catalog, rng=rng,
                                transport=AiohttpTransport(max_connections=cfg.max_connections,
                                                           keepalive_expiry_s=cfg.keepalive_expiry_s))
    return out
