"""Pure in-process federated round loop: same client and server functions as the Flower apps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_rl.federated.client import get_client
from router_rl.federated.config import FederatedConfig
from router_rl.federated.server import (
    ClientReply,
    FederationHistory,
    FederationResult,
    aggregate_evaluate,
    aggregate_train,
    sample_clients,
    save_outputs,
)

if TYPE_CHECKING:
    from router_rl.federated.grid import LocalGrid


def initial_adapter(cfg: FederatedConfig) -> dict:
    """The seeded initial global adapter tensors (identical on every party for a given config)."""
    from router_rl.federated.lora import build_lora_model, get_adapter_arrays

    return get_adapter_arrays(build_lora_model(cfg))


def run_inprocess(
    cfg: FederatedConfig, out_dir: str | Path, *, on_round: Callable[[int, dict], None] | None = None
) -> FederationResult:
    """Run ``cfg.num_rounds`` rounds of federated LoRA fine-tuning without Flower/Ray (FedAvg / FedProx).

    Round 0 evaluates the initial adapter; each round samples clients (seeded), trains them locally,
    aggregates their adapters with example-weighted FedAvg and evaluates the new global adapter on
    every sampled client's held-out data.

    Args:
        cfg: Run config.
        out_dir: Where ``global_adapter/`` and ``metrics.json`` are written.
        on_round: Optional callback ``(round, round_log)`` (e.g. a progress bar).
    """
    for field, bad in (("strategy", cfg.strategy in ("fedadam", "fedyogi")), ("secure_aggregation",
                       cfg.secure_aggregation), ("dp", cfg.dp)):
        if bad:
            raise ValueError(f"{field}: run_inprocess runs FedAvg/FedProx only; use run_local_grid, the Flower "
                             f"simulation or `flwr run` for {field}={getattr(cfg, field)!r}")
    history = FederationHistory()
    arrays = initial_adapter(cfg)
    keys = set(arrays)
    ids = list(range(cfg.num_clients))
    ev = sample_clients(ids, cfg.fraction_evaluate, seed=cfg.seed, server_round=0, stage="evaluate")
    aggregate_evaluate(history, 0, [ClientReply(i, get_client(cfg, i).evaluate(arrays)) for i in ev])
    if on_round:
        on_round(0, history.rounds[0])
    for r in range(1, cfg.num_rounds + 1):
        tr = sample_clients(ids, cfg.fraction_train, seed=cfg.seed, server_round=r, stage="train")
        replies = []
        for i in tr:
            new, metrics = get_client(cfg, i).fit(arrays, server_round=r)
            replies.append(ClientReply(i, metrics, new))
        arrays = aggregate_train(history, r, replies, expected_keys=keys)
        ev = sample_clients(ids, cfg.fraction_evaluate, seed=cfg.seed, server_round=r, stage="evaluate")
        aggregate_evaluate(history, r, [ClientReply(i, get_client(cfg, i).evaluate(arrays)) for i in ev])
        if on_round:
            on_round(r, history.rounds[r])
    adapter_dir, metrics_path = save_outputs(cfg, arrays, history, out_dir)
    return FederationResult(arrays=arrays, history=history, adapter_dir=adapter_dir, metrics_path=metrics_path)


def run_local_grid(
    cfg: FederatedConfig, out_dir: str | Path, *, client_app: Any | None = None,
) -> tuple[FederationResult, LocalGrid]:
    """Run the Flower ServerApp logic and ClientApp over an in-process :class:`LocalGrid` (no Ray).

    Every strategy, SecAgg+ and DP work here exactly as under the Flower runtimes.

    Args:
        cfg: Run config.
        out_dir: Where ``global_adapter/`` and ``metrics.json`` are written.
        client_app: ClientApp the nodes run (default ``make_client_app(cfg)``).

    Returns:
        The result and the grid (its ``received`` exchanges: what the server was handed).
    """
    from router_rl.federated.client_app import make_client_app
    from router_rl.federated.grid import LocalGrid
    from router_rl.federated.server_app import run_server

    grid = LocalGrid(client_app or make_client_app(cfg), cfg.num_clients)
    return run_server(grid, cfg, out_dir), grid
