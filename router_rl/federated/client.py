"""Client-side logic shared by the Flower ClientApp and the in-process round loop.

A :class:`ClientRuntime` owns one agent type's LOCAL data and a LoRA-wrapped copy of the base
model. It receives global adapter tensors, trains / evaluates locally and returns only adapter
tensors plus scalar metrics: prompt text and base weights never leave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from router_rl.federated.config import FederatedConfig
from router_rl.federated.data import ClientPartition, build_partition

Metrics = dict[str, float | int]


class ClientRuntime:
    """One federated client (one QE agent type).

    Args:
        cfg: Run config.
        partition_id: Index of the client's agent type in ``cfg.agent_types``.
    """

    def __init__(self, cfg: FederatedConfig, partition_id: int) -> None:
        from router_rl.federated.lora import build_lora_model, load_tokenizer

        self.cfg = cfg
        self.partition_id = partition_id
        tokenizer = load_tokenizer(cfg.base_model_path)
        self.partition: ClientPartition = build_partition(cfg, partition_id, tokenizer)
        self.model: Any = build_lora_model(cfg)

    def _load(self, arrays: Mapping[str, np.ndarray]) -> None:
        from router_rl.federated.lora import set_adapter_arrays

        set_adapter_arrays(self.model, arrays)

    def fit(
        self, arrays: Mapping[str, np.ndarray], *, server_round: int, lr: float | None = None,
        local_epochs: int | None = None,
    ) -> tuple[dict[str, np.ndarray], Metrics]:
        """Start from the global adapter ``arrays``, train locally, return the new adapter and metrics."""
        from router_rl.federated.lora import get_adapter_arrays
        from router_rl.federated.train import train_local

        self._load(arrays)
        res = train_local(self.model, self.partition.train, self.cfg, server_round=server_round,
                          partition_id=self.partition_id, lr=lr, local_epochs=local_epochs)
        out = get_adapter_arrays(self.model)
        metrics: Metrics = {
            "train-loss": res.loss,
            "num-examples": res.num_examples,
            "steps": res.steps,
            "partition-id": self.partition_id,
            "num-params-sent": int(sum(a.size for a in out.values())),
        }
        return out, metrics

    def evaluate(self, arrays: Mapping[str, np.ndarray]) -> Metrics:
        """Evaluate the global adapter ``arrays`` on this client's held-out prompts."""
        from router_rl.federated.train import evaluate

        self._load(arrays)
        res = evaluate(self.model, self.partition.eval, batch_size=max(self.cfg.batch_size, 16))
        return {
            "eval-loss": res.loss,
            "eval-perplexity": res.perplexity,
            "num-examples": res.num_examples,
            "num-tokens": res.num_tokens,
            "partition-id": self.partition_id,
        }


_CACHE: dict[tuple[str, int], ClientRuntime] = {}


def get_client(cfg: FederatedConfig, partition_id: int) -> ClientRuntime:
    """A per-process cached :class:`ClientRuntime` (the base model is loaded once per config + client)."""
    key = (cfg.model_dump_json(), partition_id)
    rt = _CACHE.get(key)
    if rt is None:
        rt = ClientRuntime(cfg, partition_id)
        _CACHE[key] = rt
    return rt


def clear_client_cache() -> None:
    """Drop all cached client runtimes (frees their models)."""
    _CACHE.clear()
