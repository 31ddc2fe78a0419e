"""Bytes sent per client per round, from a :class:`~router_rl.federated.grid.LocalGrid`'s exchanges."""

from __future__ import annotations

from typing import Any


def bytes_per_client_round(grid: Any, *, message_type: str = "train") -> dict[tuple[int, str], dict[str, int]]:
    """``{(partition_id, round): {"up", "down", "messages"}}`` summed over the round's exchanges.

    ``up`` is client -> server (the serialised replies), ``down`` server -> client; a SecAgg+ round
    has four exchanges per client (setup, share keys, masked vector, unmask), a plain round one.
    """
    out: dict[tuple[int, str], dict[str, int]] = {}
    for ex in grid.exchanges(message_type=message_type):
        d = out.setdefault((ex.partition_id, ex.group_id), {"up": 0, "down": 0, "messages": 0})
        d["up"] += ex.received_bytes
        d["down"] += ex.sent_bytes
        d["messages"] += 1
    return out
