"""The one policy loader and evaluator of the serving path.

A :class:`PolicyEngine` holds a loaded :class:`~router_rl.policies.RoutingPolicy` artifact (loaded
through :meth:`RoutingPolicy.load`) and its feature encoder, and answers
:class:`~router_rl.serve.protocol.RouteRequest` batches. The Ray Serve deployment runs one per
replica; the live router's in-process LEARNED strategy runs one too
(:class:`router_rl.router.policy_client.InProcessPolicyClient`), so both serve exactly the same way.

Stateful policies: a policy that exposes ``state_fields`` (PPO) is evaluated on
``policy.observe(task_features, state)``, the state part built by
:func:`router_rl.envs.state.state_vector` from each record's
:class:`~router_rl.serve.protocol.RouterState`, exactly as ``BudgetedRouting`` lays it out. A
state column the protocol cannot carry refuses the artifact at load time; a record without the
state the policy needs is refused (:class:`PolicyStateError`), never answered from features alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.policies.base import PolicyLoadError, RoutingPolicy
from router_rl.serve.protocol import RouteRequest, RouteResponse, RouterState, StateSpec, TaskRecord

#: :class:`RouterState` scalar fields a policy's ``state_fields`` may name.
_SCALARS = ("budget_remaining_frac", "elapsed_frac", "local_share")
_BREAKER = "breaker:"


class PolicyStateError(ValueError):
    """A record lacks router state the policy needs (the endpoint answers HTTP 422)."""


class PolicyOutputError(RuntimeError):
    """The policy produced something that is not a distribution over its models."""


@dataclass(frozen=True)
class EngineOutput:
    """What the engine computed for a batch.

    Attributes:
        features: ``(n, d)`` encoded task features.
        state: ``(n, s)`` state columns the policy saw (``None`` for a stateless policy).
        probs: ``(n, n_models)`` action distributions.
    """

    features: np.ndarray
    state: np.ndarray | None
    probs: np.ndarray


def state_spec_of(policy: RoutingPolicy, where: str) -> StateSpec | None:
    """The router state ``policy`` needs (``None``: features only).

    Raises:
        PolicyLoadError: the policy declares a state column the wire protocol cannot carry.
    """
    if not hasattr(type(policy), "state_fields"):
        return None
    try:
        fields = [str(f) for f in policy.state_fields]  # type: ignore[attr-defined]
    except RuntimeError as e:
        raise PolicyLoadError(f"{where}: cannot serve this {policy.kind!r} policy: {e}") from e
    providers = [str(p) for p in getattr(policy, "providers", ())]
    unknown = [f for f in fields if f not in _SCALARS and not f.startswith(_BREAKER)]
    breaker_cols = [f[len(_BREAKER):] for f in fields if f.startswith(_BREAKER)]
    if unknown:
        raise PolicyLoadError(
            f"{where}: the {policy.kind!r} policy needs state {unknown} that the router does not send "
            f"(it sends {list(_SCALARS)} and one breaker state per provider)"
        )
    if breaker_cols != providers:
        raise PolicyLoadError(f"{where}: breaker columns {breaker_cols} differ from the policy's providers {providers}")
    if [f for f in fields if f in _SCALARS] != list(_SCALARS):
        raise PolicyLoadError(f"{where}: scalar state columns {fields} are not {list(_SCALARS)} in that order")
    return StateSpec(fields=fields, providers=providers)


class PolicyEngine:
    """A loaded policy artifact and its encoder, answering :class:`RouteRequest` batches.

    Args:
        policy: Folder written by ``RoutingPolicy.save`` (loaded with :meth:`RoutingPolicy.load`),
            or an already loaded policy. Either way it must carry its feature encoder.

    Raises:
        PolicyLoadError: not an artifact, no encoder, or state the protocol cannot carry.
    """

    def __init__(self, policy: str | Path | RoutingPolicy) -> None:
        if isinstance(policy, RoutingPolicy):
            self.policy_dir: Path | None = None
            self.policy = policy
        else:
            self.policy_dir = Path(policy)
            self.policy = RoutingPolicy.load(self.policy_dir)
        where = str(self.policy_dir) if self.policy_dir is not None else f"policy {self.policy.version}"
        encoder = self.policy.encoder
        if encoder is None:
            raise PolicyLoadError(f"{where}: policy artifact has no feature encoder; cannot serve raw requests")
        self.encoder: Any = encoder
        self.state_spec: StateSpec | None = state_spec_of(self.policy, where)
        # compile (or load) the per-request kernels now, at load time, not on the first live request
        from router_rl.features.jit import warm_up

        self.kernel_backend = warm_up()

    @property
    def version(self) -> str:
        """Version string of the loaded policy."""
        return self.policy.version

    @property
    def models(self) -> tuple[str, ...]:
        """The policy's models (column order of every distribution)."""
        return self.policy.models

    def fresh_state(self) -> RouterState:
        """A full budget, nothing elapsed, no local share, every breaker closed (the canary's state)."""
        providers = self.state_spec.providers if self.state_spec is not None else []
        return RouterState(budget_remaining_frac=1.0, elapsed_frac=0.0, local_share=0.0,
                           breakers=dict.fromkeys(providers, "closed"))

    def canary(self) -> RouteRequest:
        """A one-record request this policy must answer (health checks, hot-swap checks)."""
        state = self.fresh_state() if self.state_spec is not None else None
        return RouteRequest(records=[TaskRecord(prompt="health check", agent_type="canary", state=state)])

    def _state_matrix(self, records: list[TaskRecord]) -> np.ndarray:
        from router_rl.envs.state import state_vector

        spec = self.state_spec
        assert spec is not None
        rows = []
        for i, r in enumerate(records):
            s = r.state
            if s is None:
                raise PolicyStateError(
                    f"records[{i}].state: policy {self.version} needs the router state {spec.fields}; "
                    "the request carries none"
                )
            if s.budget_remaining_frac is None:
                raise PolicyStateError(
                    f"records[{i}].state.budget_remaining_frac: policy {self.version} needs the remaining budget "
                    "fraction; the router has no budget window (set budgets.global.daily_usd)"
                )
            missing = [p for p in spec.providers if p not in s.breakers]
            if missing:
                raise PolicyStateError(
                    f"records[{i}].state.breakers: policy {self.version} reads the breakers of providers "
                    f"{spec.providers}; missing {missing} (sent {sorted(s.breakers)})"
                )
            rows.append(state_vector(
                budget_remaining_frac=s.budget_remaining_frac, elapsed_frac=s.elapsed_frac,
                local_share=s.local_share, breakers=s.breakers, providers=spec.providers,
            ))
        return np.stack(rows)

    def evaluate(self, records: list[TaskRecord]) -> EngineOutput:
        """Encode ``records`` (and their state, for a stateful policy) and run the policy.

        Raises:
            PolicyStateError: a record lacks state the policy needs.
            PolicyOutputError: the policy's answer is not a distribution over its models.
        """
        X = np.asarray(self.encoder.transform_records([r.encoder_record() for r in records]), dtype=np.float32)
        S: np.ndarray | None = None
        if self.state_spec is not None:
            S = self._state_matrix(records)
            probs = self.policy.action_distribution(self.policy.observe(X, S))  # type: ignore[attr-defined]
        else:
            probs = self.policy.action_distribution(X)
        P = np.asarray(probs, dtype=np.float64)
        m = self.policy.n_models
        if P.shape != (len(records), m):
            raise PolicyOutputError(f"policy {self.version}: answered shape {P.shape}, expected {(len(records), m)}")
        for i, row in enumerate(P):
            if not all(math.isfinite(p) and p >= 0 for p in row) or abs(float(row.sum()) - 1.0) > 1e-6:
                raise PolicyOutputError(f"policy {self.version}: row {i} is not a distribution: {row.tolist()}")
        return EngineOutput(X, S, P)

    def route(self, request: RouteRequest) -> RouteResponse:
        """The policy's distribution and argmax per record.

        The choice is the argmax of the distribution, a deterministic function of the request, so
        the propensity of the chosen model is 1 (not ``probs[chosen]``); ``probs`` stays the
        policy's distribution for off-policy evaluation of *other* selection rules.
        """
        out = self.evaluate(request.records)
        chosen = out.probs.argmax(axis=1)
        models = list(self.policy.models)
        return RouteResponse(
            policy_version=self.version,
            models=models,
            probs=out.probs.tolist(),
            chosen=[models[i] for i in chosen],
            propensity=[1.0] * len(chosen),
        )
