"""Server-side logic shared by the Flower ServerApp and the in-process round loop.

Aggregation is example-weighted FedAvg of LoRA tensors in a fixed client order (sorted by
partition id), so results are reproducible; per-client and aggregated metrics of every round are
kept in a :class:`FederationHistory` and written next to the saved global adapter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.federated.aggregate import is_adapter_key, weighted_fedavg, weighted_mean
from router_rl.federated.config import FederatedConfig


@dataclass(frozen=True)
class ClientReply:
    """What one client sent back: adapter tensors (train only) and scalar metrics."""

    partition_id: int
    metrics: Mapping[str, float | int]
    arrays: Mapping[str, np.ndarray] | None = None


@dataclass
class FederationHistory:
    """Per-round metrics: ``rounds[r]`` has ``train``/``evaluate`` per client and aggregates.

    Round 0 holds the evaluation of the initial (untrained) global adapter.
    """

    rounds: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: ``time.monotonic()`` when each round's evaluation was aggregated (wall-clock; not in :meth:`to_json`).
    evaluated_at: dict[int, float] = field(default_factory=dict, compare=False)

    def round_seconds(self) -> dict[str, float]:
        """Wall seconds of each round ``r >= 1`` (train + aggregate + evaluate): from round ``r-1``'s evaluation
        to round ``r``'s. Keys are round numbers as strings (JSON)."""
        t = self.evaluated_at
        return {str(r): t[r] - t[r - 1] for r in sorted(t) if r - 1 in t}

    def _round(self, r: int) -> dict[str, Any]:
        return self.rounds.setdefault(r, {"round": r})

    def eval_loss(self, r: int) -> float:
        """Aggregated (example-weighted) held-out loss after round ``r``."""
        return float(self.rounds[r]["eval_loss"])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (rounds in order)."""
        return {"rounds": [self.rounds[r] for r in sorted(self.rounds)]}


def sample_clients(ids: Sequence[int], fraction: float, *, seed: int, server_round: int, stage: str) -> list[int]:
    """Seeded sample of ``ceil(fraction * n)`` (at least 1) client ids, returned sorted."""
    ordered = sorted(ids)
    k = max(1, int(np.ceil(fraction * len(ordered) - 1e-9)))
    if k >= len(ordered):
        return ordered
    rng = np.random.default_rng([seed, server_round, 0 if stage == "train" else 1])
    return sorted(ordered[i] for i in rng.choice(len(ordered), size=k, replace=False))


def aggregate_train(
    history: FederationHistory, server_round: int, replies: Sequence[ClientReply], *, expected_keys: set[str],
    secure_mean: Mapping[str, np.ndarray] | None = None, uniform_weights: bool = False,
) -> dict[str, np.ndarray]:
    """FedAvg the replies' adapters (weighted by ``num-examples``) and log per-client metrics.

    Args:
        history: Where the round's metrics go.
        server_round: Current round.
        replies: One per client that returned a result.
        expected_keys: The LoRA tensor names.
        secure_mean: The SecAgg+ aggregate (replies then carry metrics only: the server never
            held an individual adapter); ``None`` averages the replies' plain adapters.
        uniform_weights: Weight every client 1 (differential privacy: sensitivity ``clip / n``).
    """
    if not replies:
        raise RuntimeError(f"round {server_round}: no client returned a training result")
    ordered = sorted(replies, key=lambda r: r.partition_id)
    weights = [1.0 if uniform_weights else float(r.metrics["num-examples"]) for r in ordered]
    if secure_mean is not None:
        if any(r.arrays for r in ordered):
            raise ValueError(f"round {server_round}: secure aggregation but a reply carries plain adapter arrays")
        if set(secure_mean) != expected_keys:
            raise ValueError(f"round {server_round}: the secure aggregate has keys other than the LoRA adapter")
        agg = {k: np.asarray(v) for k, v in secure_mean.items()}
    else:
        states = []
        for rep in ordered:
            if rep.arrays is None:
                raise ValueError(f"round {server_round}: client {rep.partition_id} sent no adapter arrays")
            keys = set(rep.arrays)
            if keys != expected_keys or not all(is_adapter_key(k) for k in keys):
                raise ValueError(
                    f"round {server_round}: client {rep.partition_id} sent tensors other than the LoRA adapter: "
                    f"unexpected {sorted(keys - expected_keys)[:3]}, missing {sorted(expected_keys - keys)[:3]}"
                )
            states.append(rep.arrays)
        agg = weighted_fedavg(states, weights)
    log = history._round(server_round)
    log["train"] = {
        str(r.partition_id): {
            **{k: _scalar(v) for k, v in r.metrics.items()},
            "num-params-received": int(sum(np.asarray(a).size for a in (r.arrays or {}).values())),
        }
        for r in ordered
    }
    log["train_loss"] = weighted_mean([float(r.metrics["train-loss"]) for r in ordered], weights)
    log["num_params_exchanged"] = int(sum(a.size for a in agg.values()))
    log["secure_aggregation"] = secure_mean is not None
    return agg


def aggregate_evaluate(history: FederationHistory, server_round: int, replies: Sequence[ClientReply]) -> float:
    """Log per-client eval metrics and return the example-weighted mean eval loss."""
    if not replies:
        raise RuntimeError(f"round {server_round}: no client returned an evaluation result")
    ordered = sorted(replies, key=lambda r: r.partition_id)
    tokens = [float(r.metrics["num-tokens"]) for r in ordered]
    loss = weighted_mean([float(r.metrics["eval-loss"]) for r in ordered], tokens)
    log = history._round(server_round)
    log["evaluate"] = {str(r.partition_id): {k: _scalar(v) for k, v in r.metrics.items()} for r in ordered}
    log["eval_loss"] = loss
    log["eval_perplexity"] = float(np.exp(min(loss, 50.0)))
    history.evaluated_at[server_round] = time.monotonic()
    return loss


def _scalar(v: Any) -> float | int:
    return int(v) if isinstance(v, int | np.integer) else float(v)


def save_outputs(
    cfg: FederatedConfig, arrays: Mapping[str, np.ndarray], history: FederationHistory, out_dir: str | Path,
    *, extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Save the global adapter (peft ``save_pretrained``) and ``metrics.json`` under ``out_dir``.

    ``extra`` (e.g. ``{"privacy": ...}``) is added at the top level of ``metrics.json``.

    Returns:
        ``(adapter_dir, metrics_path)``.
    """
    from router_rl.federated.lora import build_lora_model, set_adapter_arrays

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_lora_model(cfg)
    set_adapter_arrays(model, arrays)
    adapter_dir = out / "global_adapter"
    model.save_pretrained(str(adapter_dir))
    metrics_path = out / "metrics.json"
    payload = {"config": json.loads(cfg.model_dump_json()), **history.to_json(), **dict(extra or {}),
               "round_seconds": history.round_seconds()}
    metrics_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return adapter_dir, metrics_path


@dataclass(frozen=True)
class FederationResult:
    """Outcome of a federated run."""

    arrays: dict[str, np.ndarray]
    history: FederationHistory
    adapter_dir: Path
    metrics_path: Path
    privacy: dict[str, Any] | None = None
