"""Start (or reuse) the local Ray the partitioned log jobs fan out on."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def ensure_ray(workers: int, *, polars_threads: int | None = 1, attempts: int = 3) -> int:
    """Start a local Ray with ``workers`` CPUs unless one is running; returns the cluster's CPUs.

    Args:
        workers: CPUs of the local Ray started here (one task per CPU).
        polars_threads: ``POLARS_MAX_THREADS`` of the worker processes (1: one core per task, so
            ``workers`` is the parallelism; None: polars' default, every core per task).
        attempts: ``ray.init`` tries when the local node times out during start-up (logged).
    """
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # a loaded machine starts the raylet slowly
        env = {"POLARS_MAX_THREADS": str(polars_threads)} if polars_threads is not None else {}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # inherited by the worker processes started with the local raylet
        try:
            for attempt in range(attempts):  # under load the raylet can miss its start-up deadline
                try:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                    break
                except Exception as e:  # ray raises a bare Exception on a start-up timeout
                    ray.shutdown()
                    if attempt == attempts - 1 or "timed out during startup" not in str(e):
                        raise
                    log.warning("ray.init timed out (attempt %d of %d); retrying", attempt + 1, attempts)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return int(ray.cluster_resources().get("CPU", 0))
