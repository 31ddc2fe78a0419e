"""Ray Serve deployment of a learned routing policy (Ray is imported only in this module).

Operators run it with::

    serve run router_rl.serve.deployment:app_builder policy_dir=/path/to/policy

or ``router-rl serve policy --policy DIR``. The live router's ``LEARNED`` strategy talks to it
through :class:`router_rl.serve.client.RemotePolicyClient`.

* the policy is loaded in ``__init__`` (one :class:`PolicyEngine` per replica);
* ``reconfigure({"policy_dir": ...})`` hot-swaps the artifact without dropping traffic: the new
  engine is loaded first and swapped in only if it loads, so a bad artifact leaves the old one
  serving and marks the replica unhealthy until a good one arrives;
* ``check_health`` raises while the last reconfigure failed, so Serve reports the problem.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from ray import serve

from router_rl.serve.engine import PolicyEngine
from router_rl.serve.protocol import HealthResponse, RouteRequest, RouteResponse

api = FastAPI(title="router-rl policy")


@serve.deployment(name="RoutingPolicy", num_replicas=1, health_check_period_s=5)
@serve.ingress(api)
class PolicyDeployment:
    """Serve a :class:`router_rl.policies.RoutingPolicy` artifact over HTTP."""

    def __init__(self, policy_dir: str) -> None:
        self._engine = PolicyEngine(policy_dir)
        self._last_error: str | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Hot-swap the policy: ``{"policy_dir": "..."}`` (Serve ``user_config``)."""
        policy_dir = config.get("policy_dir")
        if not policy_dir or str(policy_dir) == str(self._engine.policy_dir):
            return
        try:
            engine = PolicyEngine(policy_dir)
        except Exception as e:  # keep serving the old policy, report unhealthy
            self._last_error = f"reconfigure to {policy_dir} failed: {e}"
            return
        self._engine = engine
        self._last_error = None

    def check_health(self) -> None:
        """Raise when the last hot swap failed (Serve marks the replica unhealthy)."""
        if self._last_error is not None:
            raise RuntimeError(self._last_error)

    @api.post("/route", response_model=RouteResponse)
    def route(self, request: RouteRequest) -> RouteResponse:
        """Route a batch of task records."""
        try:
            return self._engine.route(request)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e

    @api.get("/health", response_model=HealthResponse)
    def health(self) -> HealthResponse:
        """Policy version and models; ``ok`` is False after a failed hot swap."""
        return HealthResponse(
            ok=self._last_error is None,
            policy_version=self._engine.version,
            models=list(self._engine.policy.models),
            detail={"error": self._last_error} if self._last_error else {},
        )


def app_builder(args: dict[str, str]) -> Any:
    """Application builder for ``serve run router_rl.serve.deployment:app_builder policy_dir=DIR``."""
    if "policy_dir" not in args:
        raise ValueError("app_builder: missing argument policy_dir=DIR")
    return PolicyDeployment.options(user_config={"policy_dir": args["policy_dir"]}).bind(args["policy_dir"])
