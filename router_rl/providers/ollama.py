"""Ollama: the OpenAI-compatible endpoint plus ``/api/tags``, ``/api/version`` and ``keep_alive``."""

from __future__ import annotations

import time
from typing import Any

from router_rl.providers.base import (
    CompletionRequest,
    HealthStatus,
    ProviderError,
    ProviderErrorKind,
    register_provider,
)
from router_rl.providers.openai_compat import OpenAICompatibleProvider


@register_provider("ollama")
class OllamaProvider(OpenAICompatibleProvider):
    """An Ollama server (``http://127.0.0.1:11434`` by default in configs).

    Options (``config.options``): ``keep_alive`` (e.g. ``"5m"`` or seconds) is sent with every
    chat request so the model stays loaded. Pulling models is deliberately not supported.
    """

    @property
    def native_root(self) -> str:
        """Server root without ``/v1`` (where ``/api/*`` lives)."""
        base = self.config.base_url
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def build_body(self, req: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        """Chat body plus ``keep_alive`` when configured (a request ``extra`` wins)."""
        body = super().build_body(req, stream=stream)
        ka = self.config.options.get("keep_alive")
        if ka is not None:
            body.setdefault("keep_alive", ka)
        return body

    async def list_models(self) -> list[str]:
        """Names of the locally available models (``GET /api/tags``)."""
        data = await self.get_json(self.native_root + "/api/tags")
        items = data.get("models") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._err(ProviderErrorKind.MALFORMED, "/api/tags: 'models' is not a list")
        return [str(d.get("name") or d.get("model")) for d in items if isinstance(d, dict)]

    async def version(self) -> str:
        """Server version (``GET /api/version``)."""
        data = await self.get_json(self.native_root + "/api/version")
        if not isinstance(data, dict) or "version" not in data:
            raise self._err(ProviderErrorKind.MALFORMED, "/api/version: no 'version' field")
        return str(data["version"])

    async def health(self) -> HealthStatus:
        """``GET /api/version``; the detail also lists configured models missing from ``/api/tags``."""
        t0 = time.perf_counter()
        try:
            version = await self.version()
            tags = set(await self.list_models())
        except ProviderError as e:
            return HealthStatus(False, time.perf_counter() - t0, str(e))
        missing = [m for m in self.info.models if m not in tags]
        detail = f"ollama {version}" + (f"; models not pulled: {missing}" if missing else "")
        return HealthStatus(not missing, time.perf_counter() - t0, detail)
