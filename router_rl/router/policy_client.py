"""Where the LEARNED strategy gets its action distribution: in-process or a remote endpoint.

The remote wire format is the policy endpoint's (``router_rl.serve`` deploys it):
``POST {endpoint}/route`` with ``{"records": [{prompt, category, agent_type, max_tokens,
n_messages}]}`` answered by ``{"policy_version", "models", "probs", "chosen", "propensity"}``.
It is spoken here with plain httpx so the router needs no Ray.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import RouterRLError

if TYPE_CHECKING:
    import httpx

    from router_rl.policies.base import RoutingPolicy


class PolicyClientError(RouterRLError):
    """The policy could not answer (timeout, HTTP error, invalid answer)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"policy {reason}: {detail}")


@dataclass(frozen=True)
class PolicyAnswer:
    """One record's action distribution.

    Attributes:
        models: Column order of ``probs``.
        probs: Probabilities (sum to 1).
        version: Policy version logged with the decision.
        features: The encoded feature vector when computed in-process.
    """

    models: tuple[str, ...]
    probs: tuple[float, ...]
    version: str
    features: tuple[float, ...] | None = None


def _check_probs(models: tuple[str, ...], probs: tuple[float, ...], where: str) -> None:
    if len(models) != len(probs) or not models:
        raise PolicyClientError("invalid", f"{where}: {len(probs)} probabilities for {len(models)} models")
    if any(not math.isfinite(p) or p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise PolicyClientError("invalid", f"{where}: probabilities must be >= 0 and sum to 1")


class PolicyClient(ABC):
    """Source of action distributions for the LEARNED strategy."""

    @property
    @abstractmethod
    def models(self) -> tuple[str, ...]:
        """The models the policy chooses among (known at construction)."""

    @abstractmethod
    async def distribution(self, record: dict[str, Any]) -> PolicyAnswer:
        """The distribution for one task record.

        Raises:
            PolicyClientError: on any failure (the router then uses its rule policy).
        """

    async def close(self) -> None:
        """Release resources."""


class InProcessPolicyClient(PolicyClient):
    """Run a :class:`~router_rl.policies.RoutingPolicy` with its :class:`FeatureEncoder` in-process.

    Args:
        policy: The policy.
        encoder: Object with ``transform_records(list[dict]) -> (n, d)`` (the artifact's encoder).
    """

    def __init__(self, policy: RoutingPolicy, encoder: Any, *, offload_chars: int = 16_384) -> None:
        self.policy = policy
        self.encoder = encoder
        self.offload_chars = offload_chars
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_dir(cls, directory: str | Path) -> InProcessPolicyClient:
        """Load a policy artifact and the encoder saved with it (``encoder.json``)."""
        from router_rl.features import FeatureEncoder
        from router_rl.policies.base import PolicyLoadError, RoutingPolicy

        d = Path(directory)
        _import_policy_kind(d)
        policy = RoutingPolicy.load(d)
        enc_path = d / "encoder.json"
        if not enc_path.is_file():
            raise PolicyLoadError(f"{d}: policy artifact has no encoder.json; the router needs it to encode requests")
        return cls(policy, FeatureEncoder.load(enc_path))

    @property
    def models(self) -> tuple[str, ...]:
        return self.policy.models

    def _distribution_sync(self, record: dict[str, Any]) -> PolicyAnswer:
        try:
            X = self.encoder.transform_records([record])
            p = self.policy.action_distribution(X)[0]
        except Exception as e:  # a broken policy never fails a request
            raise PolicyClientError("error", f"{type(e).__name__}: {e}") from e
        probs = tuple(float(v) for v in p)
        _check_probs(self.policy.models, probs, f"policy {self.policy.version}")
        return PolicyAnswer(self.policy.models, probs, self.policy.version, tuple(float(v) for v in X[0]))

    async def distribution(self, record: dict[str, Any]) -> PolicyAnswer:
        """Encode + decide; a prompt over ``offload_chars`` is encoded in a worker thread (loop stays free)."""
        if len(str(record.get("prompt") or "")) <= self.offload_chars:
            return self._distribution_sync(record)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="router-encode")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._distribution_sync, record)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _import_policy_kind(d: Path) -> None:
    """Import the ``router_rl.policies`` module registering the artifact's kind, if not yet loaded."""
    import importlib
    import json
    import pkgutil

    import router_rl.policies as pkg
    from router_rl.policies.base import POLICY_REGISTRY

    try:
        kind = json.loads((d / "policy.json").read_text()).get("kind")
    except (OSError, ValueError):
        return  # RoutingPolicy.load reports the problem with the file name
    for info in pkgutil.iter_modules(pkg.__path__):
        if kind in POLICY_REGISTRY:
            return
        if not info.name.startswith("_"):
            importlib.import_module(f"router_rl.policies.{info.name}")


class HTTPPolicyClient(PolicyClient):
    """JSON client of a remote policy endpoint, with a hard timeout.

    Args:
        endpoint: Base URL (``/route`` is appended).
        models: The models the endpoint is expected to answer for (checked on every answer).
        timeout_s: Total time allowed per call.
    """

    def __init__(self, endpoint: str, models: tuple[str, ...], *, timeout_s: float = 0.05) -> None:
        import httpx

        self.endpoint = endpoint.rstrip("/")
        self._models = tuple(models)
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    async def distribution(self, record: dict[str, Any]) -> PolicyAnswer:
        import httpx

        body = {"records": [{k: record.get(k) for k in ("prompt", "category", "agent_type", "max_tokens",
                                                          "n_messages")}]}
        try:
            resp = await asyncio.wait_for(self._client.post(f"{self.endpoint}/route", json=body), self.timeout_s)
        except (TimeoutError, httpx.TimeoutException) as e:
            raise PolicyClientError("timeout", f"{self.endpoint}/route took longer than {self.timeout_s}s") from e
        except httpx.HTTPError as e:
            raise PolicyClientError("connection", f"{self.endpoint}/route: {type(e).__name__}") from e
        if resp.status_code != 200:
            raise PolicyClientError("http_error", f"{self.endpoint}/route answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            models = tuple(str(m) for m in data["models"])
            probs = tuple(float(v) for v in data["probs"][0])
            version = str(data.get("policy_version", "remote@unknown"))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise PolicyClientError("invalid", f"{self.endpoint}/route: malformed answer ({type(e).__name__})") from e
        _check_probs(models, probs, f"{self.endpoint}/route")
        unknown = [m for m in models if m not in self._models]
        if unknown:
            raise PolicyClientError("invalid", f"{self.endpoint}/route answered unknown models {unknown}")
        return PolicyAnswer(models, probs, version)

    async def close(self) -> None:
        await self._client.aclose()
