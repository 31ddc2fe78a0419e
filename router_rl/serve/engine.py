"""In-process policy engine: a loaded policy artifact + its encoder, answering :class:`RouteRequest`.

Used by the Ray Serve deployment (one engine per replica) and usable directly without Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from router_rl.policies.base import RoutingPolicy
from router_rl.serve.protocol import RouteRequest, RouteResponse


class PolicyEngine:
    """Load a policy artifact folder and route batches of task records.

    Args:
        policy_dir: Folder written by ``RoutingPolicy.save`` (must carry its feature encoder).
    """

    def __init__(self, policy_dir: str | Path) -> None:
        self.policy_dir = Path(policy_dir)
        self.policy = RoutingPolicy.load(self.policy_dir)
        encoder = getattr(self.policy, "encoder", None)
        if encoder is None:
            raise ValueError(f"{self.policy_dir}: policy artifact has no feature encoder; cannot serve raw requests")
        self.encoder: Any = encoder

    @property
    def version(self) -> str:
        """Version string of the loaded policy."""
        return self.policy.version

    def route(self, request: RouteRequest) -> RouteResponse:
        """Encode the records and return the policy's distribution and argmax per record.

        The choice is the argmax of the distribution, a deterministic function of the request, so
        the propensity of the chosen model is 1 (not ``probs[chosen]``); ``probs`` stays the
        policy's distribution for off-policy evaluation of *other* selection rules.
        """
        records = [r.model_dump(exclude_none=True) for r in request.records]
        X = np.asarray(self.encoder.transform_records(records), dtype=np.float32)
        probs = self.policy.action_distribution(X)
        chosen = probs.argmax(axis=1)
        models = list(self.policy.models)
        return RouteResponse(
            policy_version=self.version,
            models=models,
            probs=probs.tolist(),
            chosen=[models[i] for i in chosen],
            propensity=[1.0] * len(chosen),
        )
