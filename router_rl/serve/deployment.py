"""Ray Serve deployment of a learned routing policy (Ray is imported only in this module).

Operators run it with::

    serve run router_rl.serve.deployment:app_builder policy_dir=/path/to/policy

or ``router-rl serve policy --policy DIR``. The live router's ``LEARNED`` strategy talks to it
through :class:`router_rl.serve.client.RemotePolicyClient` (the one HTTP client), speaking
:mod:`router_rl.serve.protocol`; a stateful policy (PPO) gets the router state with every record
and answers HTTP 422 for a record without it.

* the policy is loaded in ``__init__`` (one :class:`PolicyEngine` per replica);
* ``reconfigure({"policy_dir": ...})`` hot-swaps the artifact without dropping traffic: the new
  engine is loaded first and swapped in only if it loads and answers a canary request, so a bad
  artifact leaves the old policy serving; ``GET /health`` then reports ``ok: false`` with the
  error until a good artifact arrives;
* ``check_health`` routes a canary record through the serving policy and raises if that fails
  (Serve then replaces the replica). A failed swap alone does not fail it: the replica still
  serves the previous policy correctly, and replacing it would only re-run the failing swap.
"""


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
            engine.route(engine.canary())
        except Exception as e:  # keep serving the old policy; /health reports the failed swap
            self._last_error = f"reconfigure to {policy_dir} failed: {e}"
            return
        self._engine = engine
        self._last_error = None

    def check_health(self) -> None:
        """Route a canary record; raise (Serve replaces the replica) if the serving policy fails."""
        self._engine.route(self._engine.canary())

    @api.post("/route", response_model=RouteResponse)
    def route(self, request: RouteRequest) -> RouteResponse:
        """Route a batch of task records (HTTP 422 for a record the policy cannot answer, e.g. no state)."""
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
            state=self._engine.state_spec,
            detail={"error": self._last_error} if self._last_error else {},
        )


def app_builder(args: dict[str, str]) -> Any:
    """Application builder for ``serve run router_rl.serve.deployment:app_builder policy_dir=DIR``."""
    if "policy_dir" not in args:
        raise ValueError("app_builder: missing argument policy_dir=DIR")
    deployment: Any = PolicyDeployment  # the decorator returns a serve Deployment (mypy sees the class)
    return deployment.options(user_config={"policy_dir": args["policy_dir"]}).bind(args["policy_dir"])
