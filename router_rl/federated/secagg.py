"""Secure aggregation of LoRA adapters with Flower's SecAgg+ protocol (``SecAggPlusWorkflow``).

Server side, :func:`secure_train_round` runs one training round through
``flwr.server.workflow.SecAggPlusWorkflow``: the router-rl strategy samples and configures the
clients as usual, the workflow runs SecAgg+'s four stages (setup, share keys, collect masked
vectors, unmask) and hands back only the example-weighted mean of the surviving clients'
adapters; the strategy then takes that mean through :meth:`LoraStrategyMixin.set_secure_result`
(FedAdam / FedYogi apply their server step to it; DP adds its noise to it). The server never
receives an individual adapter: clients upload ``[w, w * adapter]`` quantised and masked, and
replies carry no plain arrays. A client that fails after the key-sharing stage is a dropout:
its masks are reconstructed from its neighbours' Shamir shares and the mean is over the others.

Client side, :func:`secure_client_train` wraps Flower's ``secaggplus_mod`` around the local
training (it is dispatched by ``client_app`` when a TRAIN message carries SecAgg+ configs).

The legacy ``Strategy`` the workflow calls (:class:`_SecAggBridge`) only moves the strategy's
messages into ``FitIns`` and takes the unmasked aggregate out; it aggregates nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from router_rl.federated.config import FederatedConfig

#: Name of the ConfigRecord SecAgg+ messages carry (``flwr.common.secure_aggregation``).
SECAGG_RECORD = "secaggplus_configs"


def is_secagg_message(msg: Message) -> bool:
    """True when ``msg`` is a stage of the SecAgg+ protocol."""
    return msg.has_content() and SECAGG_RECORD in msg.content.config_records


def secagg_stage(msg: Message) -> str:
    """The SecAgg+ stage ``msg`` asks for (``setup``, ``share_keys``, ``collect_masked_vectors``, ``unmask``)."""
    return str(msg.content.config_records[SECAGG_RECORD]["stage"])


class _SecAggBridge:
    """Legacy-strategy face the SecAgg+ workflow needs; built fresh for each round."""

    def __init__(self, messages: Sequence[Message], grid: Grid) -> None:
        from flwr.server.compat.grid_client_proxy import GridClientProxy

        self.messages = {m.metadata.dst_node_id: m for m in messages}
        self.proxies = {nid: GridClientProxy(node_id=nid, grid=grid, run_id=0) for nid in self.messages}
        self.mean: list[np.ndarray] | None = None
        self.results: list[tuple[int, int, dict[str, Any]]] = []
        self.num_failures = 0

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[tuple[Any, Any]]:
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import FitIns

        out = []
        for nid, msg in self.messages.items():
            params = compat.arrayrecord_to_parameters(msg.content.array_records["arrays"], keep_input=True)
            config = dict(msg.content.config_records["config"])
            out.append((self.proxies[nid], FitIns(parameters=params, config=config)))  # type: ignore[arg-type]
        return out

    def aggregate_fit(self, server_round: int, results: list[tuple[Any, Any]], failures: list[Any]) -> tuple[Any, dict]:
        from flwr.common import parameters_to_ndarrays

        self.num_failures = len(failures)
        if not results:
            return None, {}
        # The workflow has set every FitRes' parameters to the one unmasked aggregate.
        self.mean = parameters_to_ndarrays(results[0][1].parameters)
        self.results = [(int(p.node_id), int(r.num_examples), dict(r.metrics)) for p, r in results]
        return results[0][1].parameters, {}


def make_workflow(cfg: FederatedConfig) -> Any:
    """Flower's ``SecAggPlusWorkflow`` with the config's SecAgg+ settings."""
    from flwr.server.workflow import SecAggPlusWorkflow

    return SecAggPlusWorkflow(
        num_shares=float(cfg.secagg_num_shares),
        reconstruction_threshold=float(cfg.secagg_reconstruction_threshold),
        max_weight=cfg.secagg_max_weight,
        clipping_range=cfg.secagg_clipping_range,
        quantization_range=cfg.secagg_quantization_range,
        timeout=cfg.secagg_timeout or None,
    )


def secure_train_round(
    strategy: Any, grid: Grid, server_round: int, arrays: ArrayRecord, config: ConfigRecord, cfg: FederatedConfig,
    keys: Sequence[str],
) -> tuple[ArrayRecord, dict[str, Any]]:
    """One training round whose aggregation is SecAgg+.

    Args:
        strategy: The outer strategy (:func:`~router_rl.federated.strategy.build_strategy`).
        grid: Flower grid.
        server_round: Round number.
        arrays: Global adapter.
        config: Train config sent to the clients.
        cfg: Run config (SecAgg+ settings).
        keys: LoRA tensor names in the order every party's adapter lists them.

    Returns:
        The new global adapter and ``{"sampled", "survivors", "dropped"}`` (partition ids).

    Raises:
        RuntimeError: SecAgg+ halted (too few survivors for the reconstruction threshold).
    """
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

    from router_rl.federated.strategy import lora_strategy

    messages = list(strategy.configure_train(server_round, arrays, config, grid))
    bridge = _SecAggBridge(messages, grid)
    ctx = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                        strategy=cast(Any, bridge))
    ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: server_round})
    ctx.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()  # the bridge sends the strategy's arrays
    make_workflow(cfg)(grid, ctx)
    if bridge.mean is None:
        raise RuntimeError(
            f"round {server_round}: SecAgg+ halted ({bridge.num_failures} failure(s)); too few clients for the "
            f"reconstruction threshold {cfg.secagg_reconstruction_threshold}"
        )
    if len(bridge.mean) != len(keys):
        raise ValueError(
            f"round {server_round}: SecAgg+ aggregate has {len(bridge.mean)} tensors, expected {len(keys)}"
        )
    ref = from_arrays(arrays)
    mean = {k: np.asarray(v, dtype=ref[k].dtype).reshape(ref[k].shape) for k, v in zip(keys, bridge.mean, strict=True)}
    lora_strategy(strategy).set_secure_result(mean, server_round)
    replies = []
    survivors = set()
    for nid, _num_examples, metrics in bridge.results:
        survivors.add(nid)
        replies.append(Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=bridge.messages[nid]))
    new, _ = strategy.aggregate_train(server_round, replies)
    pid = {nid: int(m.get("partition-id", -1)) for nid, _, m in bridge.results}
    sampled = sorted(bridge.messages)
    info = {
        "sampled_nodes": len(sampled),
        "survivors": sorted(pid[n] for n in survivors),
        "dropped_nodes": len(sampled) - len(survivors),
    }
    return new, info


def from_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """``ArrayRecord`` -> ``{name: ndarray}``."""
    return {k: v.numpy() for k, v in record.items()}


def secure_client_train(
    msg: Message, context: Context, fit: Callable[[Mapping[str, np.ndarray], ConfigRecord], tuple[dict, dict]],
    keys_of: Callable[[], list[str]],
) -> Message:
    """Client side of SecAgg+: Flower's ``secaggplus_mod`` around local training.

    Args:
        msg: A SecAgg+ stage message.
        context: The node's context (SecAgg+ keeps its keys and shares in ``context.state``).
        fit: ``(global_adapter, config) -> (new_adapter, metrics)``; ``metrics["secagg-weight"]``
            is the weight SecAgg+ multiplies the adapter by (``num-examples``, or 1 under DP).
        keys_of: The adapter's tensor names in order.
    """
    import flwr.compat.common.recorddict_compat as compat
    from flwr.client.mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    def inner(m: Message, _ctx: Context) -> Message:
        fitins = compat.recorddict_to_fitins(m.content, keep_input=True)
        names = keys_of()
        tensors = parameters_to_ndarrays(fitins.parameters)
        if len(tensors) != len(names):
            raise ValueError(f"SecAgg+ fit: received {len(tensors)} tensors, the adapter has {len(names)}")
        new, metrics = fit(dict(zip(names, tensors, strict=True)), ConfigRecord(dict(fitins.config)))
        weight = int(metrics.pop("secagg-weight"))
        res = FitRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters([new[k] for k in names]),
                     num_examples=weight, metrics=metrics)
        return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=m)

    return secaggplus_mod(msg, context, inner)
