"""Example-weighted FedAvg of LoRA adapter tensors (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Substrings that mark a LoRA adapter tensor in peft state-dict keys.
ADAPTER_MARKERS: tuple[str, ...] = ("lora_A", "lora_B")


def is_adapter_key(key: str) -> bool:
    """True when ``key`` names a LoRA A/B tensor (the only tensors clients may send)."""
    return any(m in key for m in ADAPTER_MARKERS)


def weighted_fedavg(
    states: Sequence[Mapping[str, np.ndarray]],
    weights: Sequence[float],
    *,
    adapter_only: bool = True,
) -> dict[str, np.ndarray]:
    """Weighted mean ``sum_k w_k * x_k / sum_k w_k`` of each tensor across clients.

    Accumulates in float64 in the given order and casts back to the first client's dtype, so the
    result is deterministic for a fixed client order.

    Args:
        states: One ``{name: array}`` per client; all must have identical keys and shapes.
        weights: Non-negative weight per client (typically its number of local examples).
        adapter_only: Reject any tensor that is not a LoRA A/B tensor.

    Raises:
        ValueError: Empty input, mismatched keys/shapes, bad weights or non-adapter tensors.
    """
    if not states:
        raise ValueError("weighted_fedavg: no client states to aggregate")
    if len(states) != len(weights):
        raise ValueError(f"weighted_fedavg: {len(states)} states but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weighted_fedavg: weights must be finite and >= 0, got {w.tolist()}")
    total = float(w.sum())
    if total <= 0:
        raise ValueError("weighted_fedavg: weights sum to 0")
    keys = list(states[0])
    if adapter_only:
        bad = [k for k in keys if not is_adapter_key(k)]
        if bad:
            raise ValueError(f"weighted_fedavg: non-adapter tensors received: {bad[:3]}")
    for i, s in enumerate(states[1:], start=1):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))[:3]
            raise ValueError(f"weighted_fedavg: client {i} keys differ from client 0 (e.g. {diff})")
    out: dict[str, np.ndarray] = {}
    for k in keys:
        ref = np.asarray(states[0][k])
        acc = np.zeros(ref.shape, dtype=np.float64)
        for i, (s, wi) in enumerate(zip(states, w, strict=True)):
            a = np.asarray(s[k])
            if a.shape != ref.shape:
                raise ValueError(
                    f"weighted_fedavg: tensor {k!r} of client {i} has shape {a.shape}, expected {ref.shape}"
                )
            acc += a.astype(np.float64) * (wi / total)
        out[k] = acc.astype(ref.dtype)
    return out


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """Weighted mean of scalars (used for aggregated metrics)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("weighted_mean: weights sum to 0")
    return float(np.dot(np.asarray(values, dtype=np.float64), w) / w.sum())
