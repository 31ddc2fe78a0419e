"""HTTP client of the remote policy endpoint (no Ray needed on the router side)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from router_rl.serve.protocol import HealthResponse, RouteRequest, RouteResponse, TaskRecord


class RemotePolicyError(RuntimeError):
    """The remote policy endpoint failed, timed out or answered something invalid."""


class RemotePolicyClient:
    """Call a policy deployment's ``/route``; every failure becomes :class:`RemotePolicyError`.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/policy``.
        timeout_s: Total time allowed per call; the router falls back to its rule policy past it.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 0.05) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    async def route(self, records: Sequence[TaskRecord | dict[str, Any]]) -> RouteResponse:
        """Route ``records``; raises :class:`RemotePolicyError` on any failure."""
        body = RouteRequest(records=[r if isinstance(r, TaskRecord) else TaskRecord(**r) for r in records])
        try:
            resp = await self._client.post(f"{self.base_url}/route", content=body.model_dump_json(),
                                           headers={"content-type": "application/json"})
            resp.raise_for_status()
            return RouteResponse.model_validate_json(resp.content)
        except (httpx.HTTPError, ValueError) as e:
            raise RemotePolicyError(f"remote policy {self.base_url}: {type(e).__name__}: {e}") from e

    async def health(self) -> HealthResponse:
        """The endpoint's health answer."""
        try:
            resp = await self._client.get(f"{self.base_url}/health")
            resp.raise_for_status()
            return HealthResponse.model_validate_json(resp.content)
        except (httpx.HTTPError, ValueError) as e:
            raise RemotePolicyError(f"remote policy {self.base_url}: {type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
