"""The one HTTP client of a remote policy endpoint (the router's, the CLI's, the tests'); no Ray needed.

It speaks :mod:`router_rl.serve.protocol` (validated on both ends) over one keep-alive connection
pool (``httpx.AsyncClient``) with a hard total timeout per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from router_rl.core.errors import RouterRLError
from router_rl.serve.protocol import HealthResponse, RouteRequest, RouteResponse, TaskRecord

#: Failure kinds of :class:`RemotePolicyError` (also the router's ``policy_<reason>`` notes).
REASONS = ("timeout", "connection", "http_error", "refused", "invalid", "closed")


class RemotePolicyError(RouterRLError):
    """The remote policy endpoint failed, timed out, refused the request or answered something invalid.

    Attributes:
        reason: One of :data:`REASONS` (``refused``: HTTP 422, the policy cannot answer this
            request, e.g. it lacks router state it needs; the detail says what; ``closed``: the
            caller's client was closed while the call waited).
        detail: What failed, without the reason prefix.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"remote policy {reason}: {detail}")


def _detail(resp: httpx.Response) -> str:
    try:
        d = resp.json().get("detail")
    except (ValueError, AttributeError):
        d = None
    text = d if isinstance(d, str) else str(d) if d is not None else resp.text
    return text[:300]


class RemotePolicyClient:
    """Call a policy deployment's ``POST /route`` and ``GET /health``.

    Every failure becomes :class:`RemotePolicyError`; a call never takes longer than
    ``timeout_s`` (connect + send + answer together).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/policy``.
        timeout_s: Total time allowed per call.
        max_connections: Size of the keep-alive connection pool.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 0.05, max_connections: int = 32) -> None:
        if timeout_s <= 0:
            raise ValueError(f"RemotePolicyClient.timeout_s: expected > 0, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=60.0),
        )

    async def _call(self, method: str, path: str, body: str | None = None,
                    timeout_s: float | None = None) -> httpx.Response:
        import asyncio

        url = f"{self.base_url}{path}"
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            if body is None:
                coro = self._client.get(url, timeout=limit)
            else:
                coro = self._client.post(url, content=body, headers={"content-type": "application/json"},
                                         timeout=limit)
            resp = await asyncio.wait_for(coro, limit)
        except (TimeoutError, httpx.TimeoutException) as e:
            raise RemotePolicyError("timeout", f"{method} {url} took longer than {limit:.3g}s") from e
        except httpx.HTTPError as e:
            raise RemotePolicyError("connection", f"{method} {url}: {type(e).__name__}: {e}") from e
        if resp.status_code == 422:
            raise RemotePolicyError("refused", f"{method} {url} answered HTTP 422: {_detail(resp)}")
        if resp.status_code != 200:
            raise RemotePolicyError("http_error", f"{method} {url} answered HTTP {resp.status_code}: {_detail(resp)}")
        return resp

    async def route(self, request: RouteRequest | Sequence[TaskRecord | dict[str, Any]], *,
                    timeout_s: float | None = None) -> RouteResponse:
        """Route a request (or a list of records); raises :class:`RemotePolicyError` on any failure.

        Args:
            request: The records.
            timeout_s: This call's total time limit (default: the client's ``timeout_s``).
        """
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"RemotePolicyClient.route: timeout_s must be > 0, got {timeout_s}")
        if not isinstance(request, RouteRequest):
            try:
                request = RouteRequest(records=[r if isinstance(r, TaskRecord) else TaskRecord(**r) for r in request])
            except ValidationError as e:
                raise RemotePolicyError("invalid", f"request: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from e
        resp = await self._call("POST", "/route", request.model_dump_json(exclude_none=True), timeout_s)
        try:
            out = RouteResponse.model_validate_json(resp.content)
        except ValidationError as e:
            raise RemotePolicyError("invalid", f"{self.base_url}/route: answer breaks the protocol: {e}") from e
        if len(out.probs) != len(request.records):
            raise RemotePolicyError(
                "invalid", f"{self.base_url}/route: {len(out.probs)} answers for {len(request.records)} records"
            )
        return out

    async def health(self) -> HealthResponse:
        """The endpoint's health answer (policy version, models, the router state it needs)."""
        resp = await self._call("GET", "/health")
        try:
            return HealthResponse.model_validate_json(resp.content)
        except ValidationError as e:
            raise RemotePolicyError("invalid", f"{self.base_url}/health: answer breaks the protocol: {e}") from e

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
