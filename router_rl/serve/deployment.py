"""Ray Serve deployment of a learned routing policy (with :mod:`router_rl.serve.app`, the only Ray importer).

Operators run it through the application builder :func:`router_rl.serve.app.build_app`
(``serve run router_rl.serve.app:build_app policy_path=DIR``, or ``serve deploy serve/policy.yaml``;
see docs/serving.md) or ``router-rl serve policy --policy DIR``. The live router's ``LEARNED``
strategy talks to it through :class:`router_rl.serve.client.RemotePolicyClient` (the one HTTP
client), speaking :mod:`router_rl.serve.protocol`; a stateful policy (PPO) gets the router state
with every record and answers HTTP 422 for a record without it.

* the policy is loaded in ``__init__`` (one :class:`PolicyEngine` per replica);
* ``reconfigure(user_config)`` hot-swaps the artifact without dropping traffic: the new engine is
  loaded first and swapped in only if it loads and answers a canary request, so a bad artifact
  leaves the old policy serving; ``GET /health`` then reports ``ok: false`` with the error until
  a good artifact arrives. The same ``user_config`` sets the batching knobs;
* concurrent ``/route`` calls on one replica are evaluated together (``@serve.batch``: one encoder
  and one policy call for the records of every request waiting, default wait 0 s, so a lone
  request is never held back); a request the policy refuses (no router state) is answered 422 on
  its own, the other requests of its batch are answered normally;
* ``check_health`` routes a canary record through the serving policy and raises if that fails
  (Serve then replaces the replica). A failed swap alone does not fail it: the replica still
  serves the previous policy correctly, and replacing it would only re-run the failing swap.
"""


from typing import Any

from fastapi import FastAPI, HTTPException
from ray import serve

from router_rl.serve.engine import PolicyEngine
from router_rl.serve.protocol import HealthResponse, RouteRequest, RouteResponse, ServeUserConfig

api = FastAPI(title="router-rl policy")

#: Name of the deployment in a Serve config's ``deployments`` list (serve/policy.yaml).
DEPLOYMENT_NAME = "RoutingPolicy"


@serve.deployment(name=DEPLOYMENT_NAME, num_replicas=1, health_check_period_s=5)
@serve.ingress(api)
class PolicyDeployment:
    """Serve a :class:`router_rl.policies.RoutingPolicy` artifact over HTTP.

    Args:
        policy_path: Artifact folder loaded at start (``user_config.policy_path`` may swap it).
    """

    def __init__(self, policy_path: str) -> None:
        self._engine = PolicyEngine(policy_path)
        self._last_error: str | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Apply a Serve ``user_config`` (:class:`ServeUserConfig`): batching knobs, policy hot swap.

        Raises:
            pydantic.ValidationError: a malformed ``user_config`` (Serve reports the update failed).
        """
        cfg = ServeUserConfig.model_validate(config)
        self._route_batch.set_max_batch_size(cfg.max_batch_size)  # type: ignore[attr-defined]
        self._route_batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)  # type: ignore[attr-defined]
        if cfg.policy_path is None or cfg.policy_path == str(self._engine.policy_dir):
            return
        try:
            engine = PolicyEngine(cfg.policy_path)
            engine.route(engine.canary())
        except Exception as e:  # keep serving the old policy; /health reports the failed swap
            self._last_error = f"reconfigure to {cfg.policy_path} failed: {e}"
            return
        self._engine = engine
        self._last_error = None

    def check_health(self) -> None:
        """Route a canary record; raise (Serve replaces the replica) if the serving policy fails."""
        self._engine.route(self._engine.canary())

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _route_batch(self, requests: list[RouteRequest]) -> list[RouteResponse | ValueError]:
        engine = self._engine  # one engine for the whole batch, even if a swap lands meanwhile
        if len(requests) > 1:
            merged = RouteRequest.model_construct(records=[r for req in requests for r in req.records])
            try:
                return list(engine.route(merged).split([len(req.records) for req in requests]))
            except ValueError:  # some request is refused (e.g. no router state): answer each on its own
                pass
        out: list[RouteResponse | ValueError] = []
        for req in requests:
            try:
                out.append(engine.route(req))
            except ValueError as e:
                out.append(e)
        return out

    @api.post("/route", response_model=RouteResponse)
    async def route(self, request: RouteRequest) -> RouteResponse:
        """Route a batch of task records (HTTP 422 for a record the policy cannot answer, e.g. no state)."""
        out = await self._route_batch(request)
        if isinstance(out, ValueError):
            raise HTTPException(status_code=422, detail=str(out))
        return out

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
