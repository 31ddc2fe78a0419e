"""Learning from the router's own traffic: logged bandit data, simulated logs, the log join.

* :mod:`router_rl.logs.data`: :class:`~router_rl.logs.data.LoggedData` (validated arrays) and
  :func:`~router_rl.logs.data.load_logged`;
* :mod:`router_rl.logs.simulate`: :func:`~router_rl.logs.simulate.simulate_log`, a decision log +
  feedback + the full truth, sampled from an outcome matrix by a logging policy;
* :mod:`router_rl.logs.join`: :func:`~router_rl.logs.join.join_logs`, decision log + feedback ->
  one labeled row per decision (:data:`router_rl.traces.schema.LOGGED_SCHEMA`).

Submodules are imported on use (no work at import time).
"""
