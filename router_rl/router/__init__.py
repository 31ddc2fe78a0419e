"""The live hybrid router: strategies, breakers, budgets, rollout, decision log, HTTP server.

Nothing is imported here (the server pulls in FastAPI); import the submodules directly:

* :mod:`router_rl.router.config` - ``RouterConfig`` / ``load_config`` (``router.yaml``)
* :mod:`router_rl.router.engine` - ``HybridRouter`` (composes the modules below)
* :mod:`router_rl.router.request` - ``RouteInput``, ``RoutingDecision``, ``RouteResult``;
  :mod:`~router_rl.router.errors` - request errors (HTTP status, OpenAI error type)
* :mod:`router_rl.router.decider` (decision + rollout state), :mod:`~router_rl.router.chain`
  (fallback chain walker), :mod:`~router_rl.router.stream` (``StreamSession``),
  :mod:`~router_rl.router.accounting` (spans, metrics, decision-log row)
* :mod:`router_rl.router.live_policy` - the learned policy's versions: hot swap, canary, rollback
  (rules: :mod:`~router_rl.router.canary`, :mod:`~router_rl.router.rollback`; intervals:
  :mod:`~router_rl.router.windows`; seeded draws: :mod:`~router_rl.router.draws`)
* :mod:`router_rl.router.server` - ``create_app`` / ``build_server_app`` / ``RouterServer`` / ``serve``
* :mod:`router_rl.router.breaker`, :mod:`~router_rl.router.budget`,
  :mod:`~router_rl.traces.decision_log`, :mod:`~router_rl.router.policy_client`,
  :mod:`~router_rl.router.policy_state` (the router state a stateful learned policy sees),
  :mod:`~router_rl.router.strategies`, :mod:`~router_rl.router.telemetry`

See ``docs/router.md``.
"""
