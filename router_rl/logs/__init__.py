"""Learning from the router's own traffic: logged bandit data, simulated logs, the log join.

* :mod:`router_rl.logs.data`: :class:`~router_rl.logs.data.LoggedData` (validated arrays) and
  :func:`~router_rl.logs.data.load_logged`;
* :mod:`router_rl.logs.simulate`: :func:`~router_rl.logs.simulate.simulate_log`, a decision log +
  feedback + the full truth, sampled from an outcome matrix by a logging policy;
* :mod:`router_rl.logs.join`: :func:`~router_rl.logs.join.join_logs`, decision log + feedback ->
  one labeled row per decision (:data:`router_rl.traces.schema.LOGGED_SCHEMA`);
* at volume (docs/scale.md): :mod:`~router_rl.logs.partition` (day / policy-version partitions,
  compaction, lazy scans), :mod:`~router_rl.logs.partition_join` (the join over partitions, late
  labels), :mod:`~router_rl.logs.scale_ope` (OPE summed over partitions),
  :mod:`~router_rl.logs.retrain` (scheduled retraining), :mod:`~router_rl.logs.synthetic` (large
  synthetic logs), :mod:`~router_rl.logs.ray_pool` (the local Ray).

Submodules are imported on use (no work at import time).
"""
