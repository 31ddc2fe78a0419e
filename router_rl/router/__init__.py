"""The live hybrid router: strategies, breakers, budgets, rollout, decision log, HTTP server.

Nothing is imported here (the server pulls in FastAPI); import the submodules directly:

* :mod:`router_rl.router.config` - ``RouterConfig`` / ``load_config`` (``router.yaml``)
* :mod:`router_rl.router.engine` - ``HybridRouter``, ``RouteInput``, request errors
* :mod:`router_rl.router.server` - ``create_app`` / ``build_server_app`` / ``RouterServer`` / ``serve``
* :mod:`router_rl.router.breaker`, :mod:`~router_rl.router.budget`,
  :mod:`~router_rl.traces.decision_log`, :mod:`~router_rl.router.policy_client`,
  :mod:`~router_rl.router.policy_state` (the router state a stateful learned policy sees),
  :mod:`~router_rl.router.strategies`, :mod:`~router_rl.router.telemetry`

See ``docs/router.md``.
"""
