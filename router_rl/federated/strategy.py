"""Flower strategies over LoRA adapters: FedAvg, FedProx, FedAdam, FedYogi (+ client-side-clipping DP).

All four share :class:`LoraStrategyMixin`: seeded client sampling, deterministic aggregation in
partition-id order (float64), failed replies raise instead of being dropped, per-client metrics in a
:class:`~router_rl.federated.server.FederationHistory`, and a SecAgg+ hook
(:meth:`LoraStrategyMixin.set_secure_result`) through which the aggregate of Flower's SecAgg+
workflow replaces the average of plain adapters. FedProx / FedAdam / FedYogi are Flower's own
classes (``flwr.serverapp.strategy``) with the mixin placed under them in the MRO, so Flower's
server-optimiser step runs on the mixin's aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedYogi, Strategy
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from router_rl.federated.config import FederatedConfig
from router_rl.federated.server import (
    ClientReply,
    FederationHistory,
    aggregate_evaluate,
    aggregate_train,
    sample_clients,
)


def to_array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """``{name: ndarray}`` -> ``ArrayRecord`` (key order preserved)."""
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def from_array_record(record: ArrayRecord) -> dict:
    """``ArrayRecord`` -> ``{name: ndarray}``."""
    return {k: v.numpy() for k, v in record.items()}


class LoraStrategyMixin(FedAvg):
    """What every router-rl strategy does on top of Flower's (no ``__init__``: call :meth:`bind`)."""

    cfg: FederatedConfig
    expected_keys: set[str]
    history: FederationHistory
    _secure: tuple[dict[str, np.ndarray], int] | None

    def bind(self, cfg: FederatedConfig, expected_keys: set[str], history: FederationHistory) -> None:
        """Attach the run config, the LoRA tensor names and the history."""
        self.cfg = cfg
        self.expected_keys = set(expected_keys)
        self.history = history
        self._secure = None

    def set_secure_result(self, mean: Mapping[str, np.ndarray], server_round: int) -> None:
        """Use SecAgg+'s aggregate for the next :meth:`aggregate_train` of ``server_round``."""
        self._secure = ({k: np.asarray(v) for k, v in mean.items()}, server_round)

    def _configure(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, stage: str
    ) -> Iterable[Message]:
        _, all_nodes = sample_nodes(grid, self.cfg.num_clients, self.cfg.num_clients)
        fraction = self.cfg.fraction_train if stage == "train" else self.cfg.fraction_evaluate
        nodes = sample_clients(all_nodes, fraction, seed=self.cfg.seed, server_round=server_round, stage=stage)
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        mtype = MessageType.TRAIN if stage == "train" else MessageType.EVALUATE
        return self._construct_messages(record, nodes, mtype)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global adapter to a seeded sample of clients."""
        return self._configure(server_round, arrays, config, grid, "train")

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global adapter to a seeded sample of clients for held-out evaluation."""
        return self._configure(server_round, arrays, config, grid, "evaluate")

    @staticmethod
    def _replies(server_round: int, replies: Iterable[Message], *, with_arrays: bool) -> list[ClientReply]:
        out: list[ClientReply] = []
        for msg in replies:
            if msg.has_error():
                raise RuntimeError(
                    f"round {server_round}: client node {msg.metadata.src_node_id} failed: {msg.error.reason}"
                )
            content = msg.content
            metrics = dict(content.metric_records["metrics"]) if "metrics" in content.metric_records else {}
            if "partition-id" not in metrics or "num-examples" not in metrics:
                raise ValueError(
                    f"round {server_round}: reply of node {msg.metadata.src_node_id} lacks "
                    "'partition-id'/'num-examples' metrics"
                )
            arrays = from_array_record(content.array_records["arrays"]) if with_arrays else None
            if not with_arrays and len(content.array_records):
                raise ValueError(
                    f"round {server_round}: reply of node {msg.metadata.src_node_id} must not carry arrays"
                )
            out.append(ClientReply(int(metrics["partition-id"]), metrics, arrays))  # type: ignore[arg-type]
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Example-weighted FedAvg of the clients' LoRA tensors (or the SecAgg+ aggregate)."""
        secure = self._secure
        if secure is not None and secure[1] != server_round:
            raise RuntimeError(f"round {server_round}: SecAgg+ result belongs to round {secure[1]}")
        self._secure = None
        reps = self._replies(server_round, replies, with_arrays=secure is None)
        agg = aggregate_train(self.history, server_round, reps, expected_keys=self.expected_keys,
                              secure_mean=secure[0] if secure else None, uniform_weights=self.cfg.dp)
        log = self.history.rounds[server_round]
        return to_array_record(agg), MetricRecord({"train-loss": float(log["train_loss"])})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Token-weighted mean held-out loss and its perplexity."""
        reps = self._replies(server_round, replies, with_arrays=False)
        loss = aggregate_evaluate(self.history, server_round, reps)
        return MetricRecord({"eval-loss": loss, "eval-perplexity": float(self.history.rounds[server_round]
                                                                          ["eval_perplexity"])})


class LoraFedAvg(LoraStrategyMixin):
    """Example-weighted FedAvg over LoRA adapters with seeded client sampling.

    Args:
        cfg: Run config (fractions, seed, number of clients).
        expected_keys: The LoRA tensor names every client must send back.
        history: Where per-round metrics go.
    """

    def __init__(self, cfg: FederatedConfig, expected_keys: set[str], history: FederationHistory) -> None:
        super().__init__(**_fedavg_kwargs(cfg))
        self.bind(cfg, expected_keys, history)


class LoraFedProx(FedProx, LoraStrategyMixin):
    """Flower's FedProx (sends ``proximal-mu``; the client adds the proximal term) over LoRA adapters."""


class LoraFedAdam(FedAdam, LoraStrategyMixin):
    """Flower's FedAdam (Adam step on the FedAvg aggregate's delta) over LoRA adapters."""


class LoraFedYogi(FedYogi, LoraStrategyMixin):
    """Flower's FedYogi (Yogi step on the FedAvg aggregate's delta) over LoRA adapters."""


def _fedavg_kwargs(cfg: FederatedConfig) -> dict[str, Any]:
    return {"fraction_train": cfg.fraction_train, "fraction_evaluate": cfg.fraction_evaluate,
            "min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": cfg.num_clients}


def build_strategy(cfg: FederatedConfig, expected_keys: set[str], history: FederationHistory) -> Strategy:
    """The strategy ``cfg.strategy`` names, wrapped in client-side-clipping DP when ``cfg.dp``.

    Returns:
        The outer strategy; :func:`lora_strategy` gives the inner LoRA one.
    """
    base: LoraStrategyMixin
    kw = _fedavg_kwargs(cfg)
    opt: dict[str, Any] = {"eta": cfg.server_lr, "eta_l": cfg.lr, "beta_1": cfg.server_beta_1,
                           "beta_2": cfg.server_beta_2, "tau": cfg.server_tau}
    if cfg.strategy == "fedavg":
        base = LoraFedAvg(cfg, expected_keys, history)
    elif cfg.strategy == "fedprox":
        base = LoraFedProx(**kw, proximal_mu=cfg.proximal_mu)
    elif cfg.strategy == "fedadam":
        base = LoraFedAdam(**kw, **opt)
    elif cfg.strategy == "fedyogi":
        base = LoraFedYogi(**kw, **opt)
    else:  # pragma: no cover - the config's Literal rejects anything else
        raise ValueError(f"strategy: unknown {cfg.strategy!r}")
    base.bind(cfg, expected_keys, history)
    if not cfg.dp:
        return base
    from router_rl.federated.dp import SeededClientSideFixedClipping

    return SeededClientSideFixedClipping(base, cfg)


def lora_strategy(strategy: Strategy) -> LoraStrategyMixin:
    """The LoRA strategy inside ``strategy`` (itself, or the one a DP wrapper wraps)."""
    inner = getattr(strategy, "strategy", strategy)
    if not isinstance(inner, LoraStrategyMixin):
        raise TypeError(f"not a router-rl LoRA strategy: {type(inner).__name__}")
    return inner
