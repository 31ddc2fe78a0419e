"""One loaded version of the learned policy (:class:`PolicySlot`) and the registry it may come from.

A slot wraps a :class:`~router_rl.router.policy_client.PolicyClient`: it names the version in
every answer (``<registry version>/<engine version>``), counts its calls in flight and closes the
client only once they have drained (:meth:`PolicySlot.retire`). The versions' life cycle (hot
swap, canary, rollback) is :mod:`router_rl.router.live_policy`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from router_rl.core.errors import ConfigError
from router_rl.router.errors import RouterRequestError
from router_rl.router.policy_client import InProcessPolicyClient, PolicyAnswer, PolicyClient

if TYPE_CHECKING:
    from router_rl.serve.protocol import StateSpec, TaskRecord


class PolicySwapRefused(RouterRequestError):
    """An admin policy change the router refuses (bad version, unloadable artifact, wrong models)."""

    status = 409
    code = "policy_swap_refused"

class Registry(Protocol):
    """What the router uses of :class:`router_rl.registry.PolicyRegistry`."""

    @property
    def live(self) -> str | None: ...

    @property
    def canary(self) -> Any: ...

    def path(self, version: str) -> Path: ...

    def set_live(self, version: str, *, reason: str, actor: str) -> Any: ...

    def rollback(self, *, reason: str, actor: str, details: dict[str, Any] | None = None) -> str: ...

    def set_canary(self, version: str | None, share: float, *, reason: str, actor: str) -> Any: ...

    def record(self, kind: str, payload: dict[str, Any]) -> Any: ...

class PolicySlot(PolicyClient):
    """One loaded policy version: renames its answers' version and counts its calls in flight.

    Args:
        client: The loaded policy.
        registry_version: Its registry version (``None``: not from a registry).
        source: The artifact folder it was loaded from (``None``: not reloadable, e.g. an endpoint).
    """

    def __init__(self, client: PolicyClient, *, registry_version: str | None = None,
                 source: Path | None = None) -> None:
        self.inner = client
        self.registry_version = registry_version
        self.source = source
        self.in_flight = 0
        self._drained: asyncio.Event | None = None
        self._label: str | None = None

    @property
    def label(self) -> str:
        """The version's key in the router's evidence and admin state (registry version, else engine version)."""
        return self._label or self.registry_version or self.inner.name

    def disambiguate(self) -> None:
        """Append a hash of the source folder to the label (two artifacts with one engine version)."""
        import hashlib

        tag = hashlib.sha256(str(self.source).encode()).hexdigest()[:8]
        self._label = f"{self.registry_version or self.inner.name}~{tag}"

    @property
    def models(self) -> tuple[str, ...]:
        return self.inner.models

    @property
    def name(self) -> str:
        return f"{self.registry_version}/{self.inner.name}" if self.registry_version else self.inner.name

    @property
    def state_spec(self) -> StateSpec | None:
        return self.inner.state_spec

    @property
    def wants_state(self) -> bool:
        return self.inner.wants_state

    @property
    def encoder_fingerprint(self) -> str | None:
        """Fingerprint of the in-process policy's encoder (``None``: remote or none)."""
        if isinstance(self.inner, InProcessPolicyClient):
            fp = getattr(self.inner.engine.encoder, "fingerprint", None)
            return fp if isinstance(fp, str) else None
        return None

    async def distribution(self, record: TaskRecord) -> PolicyAnswer:
        self.in_flight += 1
        try:
            ans = await self.inner.distribution(record)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._drained is not None:
                self._drained.set()
        version = f"{self.registry_version}/{ans.version}" if self.registry_version else ans.version
        return PolicyAnswer(ans.models, ans.probs, version, ans.features)

    async def retire(self) -> None:
        """Wait until the calls in flight have finished, then close the client."""
        if self.in_flight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self.inner.close()

    async def close(self) -> None:
        await self.inner.close()

def open_registry(root: Path) -> Registry:
    """The policy registry at ``root`` (``learned.registry``).

    Raises:
        ConfigError: naming ``learned.registry`` when the folder is not a readable registry.
    """
    from router_rl.registry import PolicyRegistry

    if not Path(root).is_dir():
        raise ConfigError("learned.registry", f"{root} is not a folder (create it with router-rl promote)")
    try:
        return PolicyRegistry(root)
    except (OSError, ValueError) as e:
        raise ConfigError("learned.registry", f"cannot open the policy registry {root}: {e}") from None


def load_registry_slot(registry: Registry, version: str, setting: str) -> PolicySlot:
    """Load registry version ``version`` in-process (at start-up; checked by the caller).

    Raises:
        ConfigError: naming ``setting`` when the version's artifact cannot be loaded.
    """
    try:
        path = Path(registry.path(version))
        client = InProcessPolicyClient.from_dir(path)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(setting, f"cannot load version {version}: {e}") from None
    return PolicySlot(client, registry_version=version, source=path)
