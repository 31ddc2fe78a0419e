"""Flower ``ClientApp``: one SuperNode per QE agent type; only LoRA tensors go back to the server."""

from __future__ import annotations

from typing import Any, cast

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from router_rl.federated.client import get_client
from router_rl.federated.config import FederatedConfig
from router_rl.federated.strategy import from_array_record, to_array_record


def config_from_context(context: Context) -> FederatedConfig:
    """Build the run config from ``context.run_config`` (``[tool.flwr.app.config]``)."""
    return FederatedConfig.from_run_config(context.run_config, source="[tool.flwr.app.config]")


def _partition_id(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise KeyError("node_config lacks 'partition-id' (set it with --node-config 'partition-id=N')")
    return int(context.node_config["partition-id"])


def make_client_app(cfg: FederatedConfig | None = None) -> ClientApp:
    """A ClientApp bound to ``cfg`` (or reading the config from ``context.run_config`` when ``None``)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        c = cfg if cfg is not None else config_from_context(context)
        conf = msg.content["config"]
        arrays, metrics = get_client(c, _partition_id(context)).fit(
            from_array_record(msg.content.array_records["arrays"]),
            server_round=int(conf["server-round"]),  # type: ignore[arg-type]
            lr=float(conf["lr"]) if "lr" in conf else None,  # type: ignore[arg-type]
            local_epochs=int(conf["local-epochs"]) if "local-epochs" in conf else None,  # type: ignore[arg-type]
        )
        record = MetricRecord(cast(dict[str, Any], metrics))
        content = RecordDict({"arrays": to_array_record(arrays), "metrics": record})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        c = cfg if cfg is not None else config_from_context(context)
        metrics = get_client(c, _partition_id(context)).evaluate(from_array_record(msg.content.array_records["arrays"]))
        return Message(content=RecordDict({"metrics": MetricRecord(cast(dict[str, Any], metrics))}), reply_to=msg)

    return app


#: Entry point named in ``[tool.flwr.app.components] clientapp``.
app = make_client_app()
