"""A Flower ``FedAvg`` that exchanges only LoRA tensors, aggregates deterministically and logs per client."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from router_rl.federated.config import FederatedConfig
from router_rl.federated.server import (
    ClientReply,
    FederationHistory,
    aggregate_evaluate,
    aggregate_train,
    sample_clients,
)


def to_array_record(arrays: dict) -> ArrayRecord:
    """``{name: ndarray}`` -> ``ArrayRecord`` (key order preserved)."""
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def from_array_record(record: ArrayRecord) -> dict:
    """``ArrayRecord`` -> ``{name: ndarray}``."""
    return {k: v.numpy() for k, v in record.items()}


class LoraFedAvg(FedAvg):
    """Example-weighted FedAvg over LoRA adapters with seeded client sampling.

    Differences from :class:`flwr.serverapp.strategy.FedAvg`: clients are sampled with a seeded
    generator (not the global ``random``), replies are aggregated in partition-id order in float64,
    any non-adapter tensor or failed client reply raises instead of being dropped, and per-client
    metrics are recorded in :attr:`history`.

    Args:
        cfg: Run config (fractions, seed, number of clients).
        expected_keys: The LoRA tensor names every client must send back.
        history: Where per-round metrics go.
    """

    def __init__(self, cfg: FederatedConfig, expected_keys: set[str], history: FederationHistory) -> None:
        super().__init__(
            fraction_train=cfg.fraction_train,
            fraction_evaluate=cfg.fraction_evaluate,
            min_train_nodes=1,
            min_evaluate_nodes=1,
            min_available_nodes=cfg.num_clients,
        )
        self.cfg = cfg
        self.expected_keys = set(expected_keys)
        self.history = history

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
            if not with_arrays and "arrays" in content:
                raise ValueError(f"round {server_round}: evaluate reply must not carry arrays")
            out.append(ClientReply(int(metrics["partition-id"]), metrics, arrays))  # type: ignore[arg-type]
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Example-weighted FedAvg of the clients' LoRA tensors."""
        reps = self._replies(server_round, replies, with_arrays=True)
        agg = aggregate_train(self.history, server_round, reps, expected_keys=self.expected_keys)
        log = self.history.rounds[server_round]
        return to_array_record(agg), MetricRecord({"train-loss": float(log["train_loss"])})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Token-weighted mean held-out loss and its perplexity."""
        reps = self._replies(server_round, replies, with_arrays=False)
        loss = aggregate_evaluate(self.history, server_round, reps)
        return MetricRecord({"eval-loss": loss, "eval-perplexity": float(self.history.rounds[server_round]
                                                                          ["eval_perplexity"])})
