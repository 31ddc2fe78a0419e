"""Flower ``ClientApp``: one SuperNode per QE agent type; only LoRA tensors go back to the server.

A TRAIN message is one of three kinds: plain (reply with the new adapter), plain with a
``clipping_norm`` (differential privacy: Flower's ``fixedclipping_mod`` clips the update), or a
SecAgg+ stage (Flower's ``secaggplus_mod``; the adapter leaves the node only masked).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from router_rl.federated.client import get_client
from router_rl.federated.config import FederatedConfig
from router_rl.federated.strategy import from_array_record, to_array_record

#: Config key of the clipping norm Flower's DP wrapper sends (``flwr.supercore.differential_privacy``).
KEY_CLIPPING_NORM = "clipping_norm"

#: ``(partition_id, round, adapter)`` callback seeing each client's update before it is sent.
UpdateHook = Callable[[int, int, Mapping[str, np.ndarray]], None]


class SimulatedDropout(RuntimeError):
    """Raised by a client told to drop out of a SecAgg+ round (tests and demos)."""


def config_from_context(context: Context) -> FederatedConfig:
    """Build the run config from ``context.run_config`` (``[tool.flwr.app.config]``)."""
    return FederatedConfig.from_run_config(context.run_config, source="[tool.flwr.app.config]")


def _partition_id(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise KeyError("node_config lacks 'partition-id' (set it with --node-config 'partition-id=N')")
    return int(context.node_config["partition-id"])


def _fit(
    c: FederatedConfig, pid: int, arrays: Mapping[str, np.ndarray], conf: ConfigRecord, *, clip: bool,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from flwr.supercore.differential_privacy import compute_clip_model_update

    sent_mu = float(cast(float, conf.get("proximal-mu", 0.0)))
    own_mu = c.proximal_mu if c.strategy == "fedprox" else 0.0
    if sent_mu != own_mu:
        raise ValueError(f"client {pid}: server sent proximal-mu={sent_mu}, this node's config says {own_mu}")
    new, metrics = get_client(c, pid).fit(
        arrays,
        server_round=int(cast(int, conf["server-round"])),
        lr=float(cast(float, conf["lr"])) if "lr" in conf else None,
        local_epochs=int(cast(int, conf["local-epochs"])) if "local-epochs" in conf else None,
    )
    if clip:
        if KEY_CLIPPING_NORM not in conf:
            raise ValueError(f"client {pid}: DP is on but the server sent no '{KEY_CLIPPING_NORM}'")
        names = list(new)
        tensors = [new[k] for k in names]
        compute_clip_model_update(tensors, [np.asarray(arrays[k]) for k in names],
                                  float(cast(float, conf[KEY_CLIPPING_NORM])))
        new = dict(zip(names, tensors, strict=True))
    return new, dict(metrics)


def make_client_app(
    cfg: FederatedConfig | None = None, *, drop: Collection[tuple[int, int]] = (),
    on_update: UpdateHook | None = None,
) -> ClientApp:
    """A ClientApp bound to ``cfg`` (or reading the config from ``context.run_config`` when ``None``).

    Args:
        cfg: Run config; ``None`` reads ``[tool.flwr.app.config]``.
        drop: ``(partition_id, round)`` pairs where the client fails in SecAgg+'s
            collect-masked-vectors stage (after sharing its keys: a mid-round dropout).
        on_update: Called with each update this node produces: under SecAgg+ after DP clipping and
            before masking; in plain DP mode before ``fixedclipping_mod`` clips it.
    """
    app = ClientApp()

    def plain(msg: Message, context: Context) -> Message:
        c = cfg if cfg is not None else config_from_context(context)
        pid = _partition_id(context)
        conf = msg.content.config_records["config"]
        arrays, metrics = _fit(c, pid, from_array_record(msg.content.array_records["arrays"]), conf, clip=False)
        if on_update is not None:
            on_update(pid, int(cast(int, conf["server-round"])), arrays)
        content = RecordDict({"arrays": to_array_record(arrays), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    def secure(msg: Message, context: Context) -> Message:
        from router_rl.federated.lora import get_adapter_arrays
        from router_rl.federated.secagg import secagg_stage, secure_client_train

        c = cfg if cfg is not None else config_from_context(context)
        pid = _partition_id(context)
        rnd = int(msg.metadata.group_id or 0)
        if (pid, rnd) in drop and secagg_stage(msg) == "collect_masked_vectors":
            raise SimulatedDropout(f"client {pid} drops out of round {rnd} after sharing its keys")

        def fit(arrays: Mapping[str, np.ndarray], conf: ConfigRecord) -> tuple[dict, dict]:
            new, metrics = _fit(c, pid, arrays, conf, clip=c.dp)
            if on_update is not None:
                on_update(pid, rnd, new)
            metrics["secagg-weight"] = 1 if c.dp else int(metrics["num-examples"])
            return new, metrics

        return secure_client_train(msg, context, fit, lambda: list(get_adapter_arrays(get_client(c, pid).model)))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        from router_rl.federated.secagg import is_secagg_message

        if is_secagg_message(msg):
            return secure(msg, context)
        if KEY_CLIPPING_NORM in msg.content["config"]:
            from flwr.clientapp.mod import fixedclipping_mod

            return fixedclipping_mod(msg, context, plain)
        return plain(msg, context)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        c = cfg if cfg is not None else config_from_context(context)
        metrics = get_client(c, _partition_id(context)).evaluate(from_array_record(msg.content.array_records["arrays"]))
        return Message(content=RecordDict({"metrics": MetricRecord(cast(dict[str, Any], metrics))}), reply_to=msg)

    return app


#: Entry point named in ``[tool.flwr.app.components] clientapp``.
app = make_client_app()
