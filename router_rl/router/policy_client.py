"""Where the LEARNED strategy gets its action distribution: in-process or a remote endpoint.

Both go through the one serving path of :mod:`router_rl.serve`: the wire contract
(:mod:`router_rl.serve.protocol`), the loader / evaluator (:class:`router_rl.serve.engine.PolicyEngine`,
run in-process here, per replica in the Ray Serve deployment) and the HTTP client
(:class:`router_rl.serve.client.RemotePolicyClient`). The router sends every record with its
:class:`~router_rl.serve.protocol.RouterState` when the policy needs it (PPO; see
:mod:`router_rl.router.policy_state`).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from router_rl.core.errors import RouterRLError
from router_rl.serve.protocol import RouteRequest, RouterState, StateSpec, TaskRecord

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy
    from router_rl.serve.engine import PolicyEngine


class PolicyClientError(RouterRLError):
    """The policy could not answer (timeout, HTTP error, refused, invalid answer, error)."""

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


def task_record(
    prompt: str,
    category: str | None,
    agent_type: str | None,
    max_tokens: int | None,
    n_messages: int,
    state: RouterState | None,
    complexity: str | None = None,
) -> TaskRecord:
    """The wire record of one request (what the feature encoder reads, plus the router state).

    Raises:
        PolicyClientError: ``invalid``, a field the protocol refuses (e.g. ``max_tokens`` < 1).
    """
    try:
        return TaskRecord(prompt=prompt, category=category, agent_type=agent_type, max_tokens=max_tokens,
                          n_messages=max(1, n_messages), state=state, complexity=complexity)  # type: ignore[arg-type]  # validated by the model
    except ValidationError as e:
        err = e.errors()[0]
        raise PolicyClientError("invalid", f"task record field {err['loc']}: {err['msg']}") from None


class PolicyClient(ABC):
    """Source of action distributions for the LEARNED strategy."""

    @property
    @abstractmethod
    def models(self) -> tuple[str, ...]:
        """The models the policy chooses among (known at construction)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """What to call the policy in messages (its version, or the endpoint)."""

    @property
    def state_spec(self) -> StateSpec | None:
        """The router state the policy needs (``None``: stateless or not known before a call)."""
        return None

    @property
    def wants_state(self) -> bool:
        """Whether the router must attach its state to every record."""
        return self.state_spec is not None

    @abstractmethod
    async def distribution(self, record: TaskRecord) -> PolicyAnswer:
        """The distribution for one task record (carrying the router state when wanted).

        Raises:
            PolicyClientError: on any failure (the router then uses its rule policy and logs why).
        """

    async def close(self) -> None:
        """Release resources."""


class InProcessPolicyClient(PolicyClient):
    """Run a policy artifact in-process through :class:`~router_rl.serve.engine.PolicyEngine`.

    Args:
        engine: The loaded engine (or build one with :meth:`from_dir` / :meth:`from_policy`).
        offload_chars: A prompt longer than this is encoded and decided in a worker thread, so the
            event loop stays free for other requests.
    """

    def __init__(self, engine: PolicyEngine, *, offload_chars: int = 16_384) -> None:
        self.engine = engine
        self.offload_chars = offload_chars
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_dir(cls, directory: str | Path) -> InProcessPolicyClient:
        """Load an artifact folder (``RoutingPolicy.load``; it must carry its encoder).

        Raises:
            PolicyLoadError: as :class:`~router_rl.serve.engine.PolicyEngine`.
        """
        from router_rl.serve.engine import PolicyEngine

        return cls(PolicyEngine(directory))

    @classmethod
    def from_policy(cls, policy: RoutingPolicy) -> InProcessPolicyClient:
        """Serve an in-memory policy (it must carry its encoder)."""
        from router_rl.serve.engine import PolicyEngine

        return cls(PolicyEngine(policy))

    @property
    def models(self) -> tuple[str, ...]:
        return self.engine.models

    @property
    def name(self) -> str:
        return self.engine.version

    @property
    def state_spec(self) -> StateSpec | None:
        return self.engine.state_spec

    async def distribution(self, record: TaskRecord) -> PolicyAnswer:
        """Encode + decide; a prompt over ``offload_chars`` goes to a worker thread (loop stays free)."""
        if len(record.prompt) <= self.offload_chars:
            return self._distribution_sync(record)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="router-encode")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._distribution_sync, record)

    def _distribution_sync(self, record: TaskRecord) -> PolicyAnswer:
        from router_rl.serve.engine import PolicyStateError

        try:
            out = self.engine.evaluate([record])
        except PolicyStateError as e:
            raise PolicyClientError("refused", str(e)) from e
        except Exception as e:  # a broken policy never fails a request
            raise PolicyClientError("error", f"{type(e).__name__}: {e}") from e
        return PolicyAnswer(self.engine.models, tuple(float(v) for v in out.probs[0]), self.engine.version,
                            tuple(float(v) for v in out.features[0]))

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class HTTPPolicyClient(PolicyClient):
    """The LEARNED strategy over a remote endpoint (the Ray Serve deployment), via the one HTTP client.

    The router does not know before a call whether the remote policy is stateful, so it sends its
    state with every record (a stateless policy ignores it; a stateful one refuses a record
    without it, HTTP 422, logged as ``policy_refused``).

    With ``max_batch`` set, concurrent calls are coalesced
    (:class:`~router_rl.router.policy_batcher.RouteCoalescer`): the records waiting go out
    together in one ``/route`` call, at most ``max_in_flight`` calls outstanding, each caller
    within its own ``timeout_s`` from its arrival. Without it, one call per record.

    Args:
        endpoint: Base URL (``/route`` is appended).
        models: The models the endpoint may answer for (checked on every answer).
        timeout_s: Total time allowed per record (from the caller's arrival).
        max_batch: Most records per coalesced call (``None``: no coalescing).
        max_in_flight: Most coalesced calls outstanding.
        io_thread: Run the coalescer, its HTTP client and the deadlines on their own event loop
            in an I/O thread (:class:`~router_rl.router.policy_batcher.ThreadedRouteCoalescer`)
            instead of the caller's loop.
    """

    def __init__(self, endpoint: str, models: tuple[str, ...], *, timeout_s: float = 0.05,
                 max_batch: int | None = None, max_in_flight: int = 2, io_thread: bool = False) -> None:
        from router_rl.router.policy_batcher import RouteCoalescer, ThreadedRouteCoalescer
        from router_rl.serve.client import RemotePolicyClient

        self.endpoint = endpoint.rstrip("/")
        self._models = tuple(models)
        self.timeout_s = timeout_s
        self.client = RemotePolicyClient(self.endpoint, timeout_s=timeout_s)
        self.coalescer: RouteCoalescer | ThreadedRouteCoalescer | None = None
        if max_batch is not None and io_thread:
            self.coalescer = ThreadedRouteCoalescer(self.endpoint, client_timeout_s=timeout_s, max_batch=max_batch,
                                                    max_in_flight=max_in_flight)
        elif max_batch is not None:
            self.coalescer = RouteCoalescer(self.client, max_batch=max_batch, max_in_flight=max_in_flight)

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    @property
    def name(self) -> str:
        return self.endpoint

    @property
    def wants_state(self) -> bool:
        return True

    async def distribution(self, record: TaskRecord) -> PolicyAnswer:
        from router_rl.serve.client import RemotePolicyError

        try:
            if self.coalescer is not None:
                row = await self.coalescer.route_one(record, self.timeout_s)
                models, probs, version = row.models, row.probs, row.policy_version
            else:
                resp = await self.client.route(RouteRequest(records=[record]))
                models, probs, version = tuple(resp.models), tuple(resp.probs[0]), resp.policy_version
        except RemotePolicyError as e:
            raise PolicyClientError(e.reason, str(e)) from e
        unknown = [m for m in models if m not in self._models]
        if unknown:
            raise PolicyClientError("invalid", f"{self.endpoint}/route answered unknown models {unknown}")
        return PolicyAnswer(models, probs, version)

    async def close(self) -> None:
        if self.coalescer is not None:
            await self.coalescer.aclose()
        await self.client.aclose()
