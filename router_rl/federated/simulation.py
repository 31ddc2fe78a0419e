"""Run a federation through Flower's simulation runtime (Ray backend), in this process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from router_rl.federated.config import FLOWER_ENV, FederatedConfig
from router_rl.federated.server import FederationResult


def flower_env(flwr_home: str | Path | None = None) -> None:
    """Set the environment a local Flower simulation needs (temp ``FLWR_HOME``, no telemetry/installs)."""
    for k, v in FLOWER_ENV.items():
        os.environ.setdefault(k, v)
    if flwr_home is not None:
        os.environ["FLWR_HOME"] = str(flwr_home)
    elif "FLWR_HOME" not in os.environ:
        os.environ["FLWR_HOME"] = tempfile.mkdtemp(prefix="router-rl-flwr-")


def default_backend_config(cfg: FederatedConfig, *, max_cpus: int = 2) -> dict[str, Any]:
    """Ray backend config: 1 CPU per client, at most ``max_cpus`` CPUs for the local Ray cluster."""
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": max(1, min(max_cpus, cfg.num_clients)), "include_dashboard": False,
                      "logging_level": "ERROR", "log_to_driver": False},
    }


def run_flower_simulation(
    cfg: FederatedConfig, out_dir: str | Path, *, backend_config: dict[str, Any] | None = None,
    verbose: bool = False,
) -> FederationResult:
    """Run the Flower ServerApp + one ClientApp SuperNode per agent type with ``run_simulation``.

    Args:
        cfg: Run config.
        out_dir: Where ``global_adapter/`` and ``metrics.json`` are written.
        backend_config: Ray backend config (default :func:`default_backend_config`).
        verbose: Flower DEBUG logging.
    """
    flower_env()
    import warnings

    from flwr.simulation import run_simulation

    from router_rl.federated.client_app import make_client_app
    from router_rl.federated.server_app import make_server_app

    sink: list[FederationResult] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=make_server_app(cfg, out_dir, sink),
            client_app=make_client_app(cfg),
            num_supernodes=cfg.num_clients,
            backend_config=backend_config or default_backend_config(cfg),
            verbose_logging=verbose,
        )
    if not sink:
        raise RuntimeError("Flower simulation ended without a result (see the Flower log above)")
    return sink[0]
