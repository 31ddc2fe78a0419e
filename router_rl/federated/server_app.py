"""Flower ``ServerApp``: R rounds of the configured strategy over LoRA adapters, then save the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from router_rl.federated.config import FederatedConfig
from router_rl.federated.server import FederationHistory, FederationResult, save_outputs
from router_rl.federated.strategy import build_strategy, from_array_record, to_array_record

DEFAULT_OUTPUT_DIR = "runs/federated"


def run_server(grid: Grid, cfg: FederatedConfig, out_dir: str | Path, *, timeout: float = 3600.0) -> FederationResult:
    """Drive a federation over ``grid``: evaluate round 0, run ``cfg.num_rounds`` rounds, save outputs.

    Plain aggregation uses the strategy's own ``start`` loop; with ``cfg.secure_aggregation`` each
    training round goes through :func:`router_rl.federated.secagg.secure_train_round`. With
    ``cfg.dp`` the privacy spent is written to ``history.privacy`` (and ``metrics.json``).
    """
    from router_rl.federated.runner import initial_adapter

    history = FederationHistory()
    init = initial_adapter(cfg)
    strategy = build_strategy(cfg, set(init), history)
    record = to_array_record(init)
    replies = grid.send_and_receive(strategy.configure_evaluate(0, record, ConfigRecord(), grid), timeout=timeout)
    strategy.aggregate_evaluate(0, replies)
    train_config: dict[str, Any] = {"lr": cfg.lr, "local-epochs": cfg.local_epochs}
    if not cfg.secure_aggregation:
        result = strategy.start(grid=grid, initial_arrays=record, num_rounds=cfg.num_rounds, timeout=timeout,
                                train_config=ConfigRecord(train_config))
        arrays = from_array_record(result.arrays)
    else:
        from router_rl.federated.secagg import secure_train_round

        keys = list(init)
        for r in range(1, cfg.num_rounds + 1):
            record, info = secure_train_round(strategy, grid, r, record, ConfigRecord(dict(train_config)), cfg, keys)
            history.rounds[r]["secagg"] = info
            replies = grid.send_and_receive(strategy.configure_evaluate(r, record, ConfigRecord(), grid),
                                            timeout=timeout)
            strategy.aggregate_evaluate(r, replies)
        arrays = from_array_record(record)
    extra: dict[str, Any] = {}
    if cfg.dp:
        extra["privacy"] = strategy.report().to_json()  # type: ignore[attr-defined]
    adapter_dir, metrics_path = save_outputs(cfg, arrays, history, out_dir, extra=extra)
    return FederationResult(arrays=arrays, history=history, adapter_dir=adapter_dir, metrics_path=metrics_path,
                            privacy=extra.get("privacy"))


def make_server_app(
    cfg: FederatedConfig | None = None, out_dir: str | Path | None = None,
    sink: list[FederationResult] | None = None,
) -> ServerApp:
    """A ServerApp bound to ``cfg`` (or reading ``context.run_config`` when ``None``).

    Args:
        cfg: Run config; ``None`` reads ``[tool.flwr.app.config]`` via the context.
        out_dir: Output folder; default ``run_config['output-dir']`` or ``runs/federated``.
        sink: Optional list the :class:`FederationResult` is appended to (in-process simulation).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from router_rl.federated.client_app import config_from_context

        c = cfg if cfg is not None else config_from_context(context)
        out = out_dir if out_dir is not None else str(context.run_config.get("output-dir", DEFAULT_OUTPUT_DIR))
        res = run_server(grid, c, out)
        if sink is not None:
            sink.append(res)

    return app


#: Entry point named in ``[tool.flwr.app.components] serverapp``.
app = make_server_app()
